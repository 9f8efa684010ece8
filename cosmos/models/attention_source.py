"""Where the attention maps of one encoder are read from, as each model declares it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

__all__ = ["AttentionSource"]


@dataclass(frozen=True)
class AttentionSource:
    """The modules behind the attention maps of one encoder.

    encoder: the dual encoder (``visual`` and ``text`` towers returning (pooled, tokens)); its
        towers' last-layer self-attention is read when there is no cross-attention.
    cross: the COSMOS unit whose cross-attention poolers and token mappings are read
        (:class:`~cosmos.models.cosmos_student.CosmosStudent`), or None.
    mask_text_padding: whether the image→text cross-attention hides caption padding.
    note: why there is no cross-attention ('' when there is).
    """
    encoder: nn.Module
    cross: Optional[nn.Module] = None
    mask_text_padding: bool = False
    note: str = ""
