"""Teacher momentum schedules: pure functions of the step, registered by name."""
from __future__ import annotations

import math

from cosmos.registry import EMA_SCHEDULERS


@EMA_SCHEDULERS.register(name="constant")
class ConstantMomentum:
    """m(step) = momentum — what the official COSMOS scripts use (``--fix-momentum``)."""

    def __init__(self, momentum: float = 0.999) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)

    def __call__(self, step: int) -> float:
        return self.momentum


@EMA_SCHEDULERS.register(name="cosine")
class CosineMomentum:
    """m(step) = 1 + ½(1 + cos(π·step/total))·(m₀ − 1): cosine from m₀ to 1, no warmup
    (the official code's non-fixed option); 1 after ``total_steps``."""

    def __init__(self, total_steps: int, base_momentum: float = 0.9995) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.total_steps, self.base_momentum = int(total_steps), float(base_momentum)

    def __call__(self, step: int) -> float:
        progress = min(1.0, step / self.total_steps)
        return 1.0 + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.base_momentum - 1.0)
