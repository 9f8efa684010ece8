"""Shared pieces of the fine-grained synthetic-scene evaluators."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from cosmos.evaluation.synthetic import embed_images, embed_tokens
from cosmos.utils.errors import DataError
from cosmos.utils.modules import eval_mode, module_device


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


def scenes_to_evaluate(dataset: Sequence[Dict[str, Any]], num_samples: Optional[int],
                       fields: Sequence[str], evaluator: str) -> int:
    """How many scenes of ``dataset`` to evaluate (the first ``num_samples``, default all),
    after checking there is one and that the first has ``fields`` (fail when the evaluator is
    built, not at its first evaluation)."""
    count = min(num_samples or len(dataset), len(dataset))
    if count == 0:
        raise DataError(f"{evaluator}: the dataset is empty")
    require_fields(dataset[0], fields, evaluator)
    return count


@torch.no_grad()
def embed_scenes(model: nn.Module, images: List[torch.Tensor], tokens: torch.Tensor,
                 batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalized embeddings of preprocessed images (N, D) and of token ids (T, L) → (T, D),
    with the model in eval mode for the call (its mode is restored after)."""
    device = module_device(model)
    with eval_mode(model):
        return (embed_images(model, images, batch_size, device),
                embed_tokens(model, tokens, batch_size, device))
