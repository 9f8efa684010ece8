"""The embeddings a contrastive loss takes: one (N, D) tensor or a list of (N, D) blocks."""
from __future__ import annotations

from typing import List, Sequence, Union

import torch

Features = Union[torch.Tensor, Sequence[torch.Tensor]]


def as_blocks(x: Features) -> List[torch.Tensor]:
    """``x`` as a list of (N, D) blocks: a single tensor is one block."""
    return [x] if isinstance(x, torch.Tensor) else list(x)
