"""The meta-architecture contract: what the trainer, the hooks, evaluation and export rely on.

A meta-architecture is an ``nn.Module`` registered in ``META_ARCHS`` that turns a batch dict
(keys: :mod:`cosmos.data.batch_keys`) into named scalar loss terms. The generic trainer
(``cosmos/engine/trainer.py``) knows nothing else about it; everything it and the hooks read is
written down here. ``tests/package/test_interfaces.py`` checks every registered meta-architecture
against these protocols with a tiny forward pass.

Required (:class:`MetaArchitecture`):

* ``forward(batch) -> Dict[str, Tensor]``: every value a 0-dim floating tensor; ``"loss"`` is
  the total that the trainer back-propagates; every other key (``clip_loss``,
  ``distill_loss``, …) is logged under its name. The trainer detaches the terms, stacks them
  to average them over ranks and turns them into Python floats at sync steps, so no value may
  have another shape. The forward runs under the DDP / FSDP wrapper: every trainable parameter
  must take part in ``loss`` (DDP fails on unused ones) and nothing but ``forward`` may be
  called on the wrapper.
* ``encoders() -> Dict[str, DualEncoder]``: the towers to evaluate and export, by name
  (``student``, ``teacher``). Each value is a registered submodule of the meta-architecture
  (export finds it by its module path in the full state dict) that satisfies
  :class:`cosmos.models.base.DualEncoder`. Evaluators receive these one by one.
  (Tools fall back to ``{"model": meta_arch}`` when the method is missing.)

Optional (the callers check with ``getattr`` / ``hasattr``):

* ``extra_metrics() -> Dict[str, float]`` (:class:`HasExtraMetrics`): Python floats logged at
  sync steps beside the loss terms (``logit_scale``, ``distill_logit_scale``). Called on the
  unwrapped model; it may synchronise with the device.
* ``ema_parameters() -> (teacher params, student params)`` (:class:`HasEMATeacher`): two
  aligned lists of tensors of equal shapes; the EMA hook (``cosmos/engine/ema_hook.py``) lerps the
  first towards the second after every step and ``train.init_checkpoint`` copies the student
  into the teacher. Teacher tensors carry no gradient. Only a meta-architecture with an EMA
  teacher has it; without it the config has no ``ema`` section.

Conventions the engine also relies on: parameters whose name ends in ``logit_scale`` are
clamped to [0, ln ``train.max_logit_scale``] after every step (``LogitScaleClamp``); the
config node ``cfg.model`` builds the same module again (FSDP evaluation rebuilds a plain copy
and loads the consolidated state dict into it); ``train(mode)`` keeps modules that never train
(an EMA teacher) in eval mode.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Protocol, Tuple, runtime_checkable

import torch
from torch import nn

__all__ = ["LossDict", "MetaArchitecture", "HasExtraMetrics", "HasEMATeacher",
           "TOTAL_LOSS_KEY"]

LossDict = Dict[str, torch.Tensor]
TOTAL_LOSS_KEY = "loss"  # the term the trainer back-propagates


@runtime_checkable
class MetaArchitecture(Protocol):
    """Batch in, loss terms out; evaluation sees its ``encoders()`` (module docstring)."""

    def forward(self, batch: Mapping[str, Any]) -> LossDict:
        """Batch dict (keys in :mod:`cosmos.data.batch_keys`) → 0-dim loss terms incl. ``loss``."""
        ...

    def encoders(self) -> Dict[str, nn.Module]:
        """Towers to evaluate / export by name; each a submodule and a ``DualEncoder``."""
        ...

    def train(self, mode: bool = True) -> nn.Module: ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Dict[str, Any]: ...


@runtime_checkable
class HasExtraMetrics(Protocol):
    """Optional: scalars logged at sync steps besides the loss terms."""

    def extra_metrics(self) -> Dict[str, float]: ...


@runtime_checkable
class HasEMATeacher(Protocol):
    """Optional: a meta-architecture with an EMA teacher (used by ``ema.hook.EMAHook``)."""

    def ema_parameters(self) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """(teacher tensors, student tensors), aligned one to one, equal shapes."""
        ...
