"""Training hook that moves the EMA teacher towards the student every step (the EMA math and
the momentum schedules live in :mod:`cosmos.ema`)."""
from __future__ import annotations

from typing import Callable, List, Tuple

import torch

from cosmos.ema.teacher import ema_update
from cosmos.engine.hook_base import HookBase


class EMAHook(HookBase):
    """Calls ``ema_update`` with ``momentum(step)`` on the meta-architecture's parameter pairs.

    The meta-architecture provides ``ema_parameters() -> (teacher params, student params)``.
    By default the update follows the optimizer step. ``before_optimizer_step=True`` reproduces
    the official COSMOS order (after backward, before the step: the teacher lags one step; as in
    the official repository's ``src/training/train.py::train_one_epoch``).
    """

    def __init__(self, momentum: Callable[[int], float],
                 before_optimizer_step: bool = False) -> None:
        self.momentum = momentum
        self.before_optimizer_step = before_optimizer_step
        self._pairs: Tuple[List[torch.Tensor], List[torch.Tensor]] = ([], [])

    def before_train(self) -> None:
        self._pairs = self.trainer.model.ema_parameters()

    def _update(self, step: int) -> None:
        m = self.momentum(step)
        ema_update(self._pairs[0], self._pairs[1], m)
        self.trainer.storage.put_scalar("ema_momentum", m)

    def after_backward(self) -> None:
        if self.before_optimizer_step:
            self._update(self.trainer.iter)

    def after_step(self) -> None:
        if not self.before_optimizer_step:
            self._update(self.trainer.iter - 1)
