"""The base class of training hooks. Hooks import this module, never the trainer."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:  # annotation only: the trainer imports this module
    from cosmos.engine.trainer import Trainer


class HookBase:
    """Called by the trainer around each step; state from ``state_dict`` goes in checkpoints.

    A hook that acts every ``period`` steps exposes it as ``self.period``: the trainer then
    synchronises with the device (loss values, NaN check) at those steps (``trainer.sync_step``).
    """

    trainer: "Trainer"

    def before_train(self) -> None: ...
    def after_train(self) -> None: ...
    def before_step(self) -> None: ...
    def after_backward(self) -> None: ...
    def after_step(self) -> None: ...

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...
