"""Transformer MLP with OpenCLIP parameter names (``c_fc``, ``c_proj``)."""
from __future__ import annotations

import torch
from torch import nn


class QuickGELU(nn.Module):
    """x · sigmoid(1.702 x), the activation OpenAI-trained CLIP weights expect. Shape preserved."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    """Linear → GELU (or QuickGELU) → Linear. x: (..., width) → (..., width)."""

    def __init__(self, width: int, hidden: int, quick_gelu: bool = False) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))
