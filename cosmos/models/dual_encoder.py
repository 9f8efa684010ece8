"""Dual encoder: an image tower, a text tower and a learnable temperature."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.models.attention_source import AttentionSource


class DualEncoder(nn.Module):
    """Wraps two towers that return (pooled, tokens); adds ``logit_scale`` (log of 1/τ).

    encode_image(images (B, 3, H, W)) → (B, D); encode_text(tokens (B, L)) → (B, D).
    Embeddings are unnormalized unless ``normalize=True``.
    """

    def __init__(self, visual: nn.Module, text: nn.Module,
                 init_logit_scale: float = math.log(1 / 0.07),
                 init_logit_bias: Optional[float] = None) -> None:
        super().__init__()
        self.visual = visual
        self.text = text
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = (nn.Parameter(torch.tensor(float(init_logit_bias)))
                           if init_logit_bias is not None else None)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        pooled = self.visual(images)[0]
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        pooled = self.text(tokens)[0]
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def attention_source(self) -> AttentionSource:
        """The towers alone: attention maps come from their last self-attention layers."""
        return AttentionSource(self, note="an exported encoder holds no cross-attention modules")

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """Normalized (image (B, D), text (B, D)) embeddings."""
        return self.encode_image(images, normalize=True), self.encode_text(tokens, normalize=True)
