"""Shared pieces of the fine-grained synthetic-scene evaluators."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from cosmos.evaluation.synthetic import embed_images, embed_tokens
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


@torch.no_grad()
def embed_scenes(model: nn.Module, images: List[torch.Tensor], tokens: torch.Tensor,
                 batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalized embeddings of preprocessed images (N, D) and of token ids (T, L) → (T, D),
    with the model in eval mode for the call (its mode is restored after)."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        return (embed_images(model, images, batch_size, device),
                embed_tokens(model, tokens, batch_size, device))
    finally:
        model.train(was_training)
