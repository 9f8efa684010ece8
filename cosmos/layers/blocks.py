"""Pre-LayerNorm transformer blocks in the parameter layout of OpenCLIP / nn.MultiheadAttention.

Keys: ``ln_1``, ``attn.in_proj_weight`` (packed q|k|v), ``attn.in_proj_bias``, ``attn.out_proj``,
``ln_2``, ``mlp.c_fc``, ``mlp.c_proj`` — so OpenCLIP state dicts map one to one.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cosmos.layers.mlp import Mlp
from cosmos.layers.multihead_attention import MultiheadAttention


# The name the blocks' attention had before it became the shared module.
MultiheadSelfAttention = MultiheadAttention


class ResidualAttentionBlock(nn.Module):
    """x ← x + Attn(LN₁ x); x ← x + MLP(LN₂ x)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0,
                 quick_gelu: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio), quick_gelu=quick_gelu)

    def forward(self, x: torch.Tensor, *, is_causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), is_causal=is_causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks (``resblocks``), optional gradient checkpointing."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0,
                 grad_checkpointing: bool = False, quick_gelu: bool = False) -> None:
        super().__init__()
        self.width = width
        self.grad_checkpointing = grad_checkpointing
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers))

    def forward(self, x: torch.Tensor, *, is_causal: bool = False) -> torch.Tensor:
        """x: (B, L, W) → (B, L, W)."""
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, is_causal=is_causal, use_reentrant=False)
            else:
                x = block(x, is_causal=is_causal)
        return x
