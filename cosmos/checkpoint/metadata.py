"""What a training checkpoint holds: a small ``meta`` dict saved beside the weights, e.g.
``{"meta_arch": "COSMOS", "teacher": True, "cross_attention": True, "distillation": True}``.

Loading a checkpoint into a model that holds other parts (an ablation's checkpoint into the full
model, or the reverse) fails with one line naming the difference, before any weight is read.
Checkpoints without ``meta`` (written before it existed) are not checked.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

from torch import nn

from cosmos.utils.errors import CheckpointError

META_KEY = "meta"
#: entries that describe the model rather than repeat one of its constructor arguments
_DERIVED = ("meta_arch", "teacher")


def model_metadata(model: nn.Module) -> Dict[str, Any]:
    """``{"meta_arch": class name, **model.checkpoint_metadata()}`` (plain bools and strings).

    Call it on the model as built, before DDP/FSDP wrapping (FSDP renames the class).
    """
    meta: Dict[str, Any] = {"meta_arch": type(model).__name__}
    describe = getattr(model, "checkpoint_metadata", None)
    if callable(describe):
        meta.update(describe())
    return meta


def check_metadata(expected: Mapping[str, Any], state: Any, source: str) -> None:
    """Raise a one-line CheckpointError when ``state``'s ``meta`` differs from ``expected``."""
    saved = state.get(META_KEY) if isinstance(state, Mapping) else None
    if not isinstance(saved, Mapping) or not expected:
        return  # a checkpoint from before the metadata, a plain state dict, or nothing to match
    keys = [k for k in dict.fromkeys([*expected, *saved]) if saved.get(k) != expected.get(k)]
    if not keys:
        return
    if "meta_arch" in keys:
        there, here, hint = saved.get("meta_arch"), expected.get("meta_arch"), ""
    else:
        there = _call(saved.get("meta_arch"), saved, keys)
        here = _call(expected.get("meta_arch"), expected, keys)
        flags = [f"model.{k}={saved[k]}" for k in keys if k in saved and k not in _DERIVED]
        hint = f", e.g. {' '.join(flags)}" if flags else ""
    raise CheckpointError(f"checkpoint {source} holds a {there}, but this config builds a {here}; "
                          f"load it with the config it was trained with (its run's config.yaml"
                          f"{hint})")


def _call(name: Any, meta: Mapping[str, Any], keys: Any) -> str:
    """``COSMOS(cross_attention=False)``: the differing entries, as constructor arguments."""
    return f"{name}(" + ", ".join(f"{k}={meta.get(k)}" for k in keys) + ")"
