"""Transformer MLP with OpenCLIP parameter names (``c_fc``, ``c_proj``)."""
from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """Linear → GELU → Linear. x: (..., width) → (..., width)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))
