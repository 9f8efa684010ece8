"""Schedules as pure functions of the step: ``schedule(step) -> float``; resume needs no replay."""
from __future__ import annotations

import math


class WarmupCosine:
    """Linear warmup to 1 over ``warmup_steps`` ((step+1)/warmup, as OpenCLIP), then a half
    cosine from 1 down to ``final_value`` at ``total_steps``; ``final_value`` afterwards."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, final_value: float = 0.0) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.total_steps, self.warmup_steps, self.final_value = (
            int(total_steps), int(warmup_steps), float(final_value))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_value + 0.5 * (1 - self.final_value) * (1 + math.cos(math.pi * progress))


class Constant:
    """The same value at every step."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = float(value)

    def __call__(self, step: int) -> float:
        return self.value
