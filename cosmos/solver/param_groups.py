"""Optimizer parameter groups: no weight decay for norms, biases, scalars and logit scales."""
from __future__ import annotations

from typing import Dict, List

from torch import nn

_NO_DECAY_NAME_PARTS = ("logit_scale", "logit_bias", "class_embedding")


def decays(name: str, ndim: int) -> bool:
    """Whether a parameter gets weight decay (OpenCLIP rule: matrices and embeddings do)."""
    if ndim < 2 or name.endswith(".bias"):
        return False
    return not any(part in name for part in _NO_DECAY_NAME_PARTS)


def get_param_groups(model: nn.Module, weight_decay: float) -> List[Dict]:
    """Two groups for ``model``'s trainable parameters: decayed and not decayed.

    Each group carries ``initial_weight_decay`` so weight-decay schedules can scale it.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param.ndim) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "initial_weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0, "initial_weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
