"""Shared pieces of the fine-grained synthetic-scene evaluators."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch
from torch import nn

from cosmos.utils.errors import DataError


def require_fields(sample: Dict[str, Any], fields: Sequence[str], evaluator: str) -> None:
    """Stop with one line naming the first field of ``fields`` that ``sample`` lacks.

    A dotted name (``captions.long``) looks inside a dict field.
    """
    for name in fields:
        value: Any = sample
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                key = sample.get("key", "?") if isinstance(sample, dict) else "?"
                raise DataError(f"{evaluator}: scene {key} has no '{name}' field; it needs "
                                f"{', '.join(fields)} (the items of datasets.synthetic_scenes)")
            value = value[part]


def model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")
