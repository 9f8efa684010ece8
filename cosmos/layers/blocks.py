"""Pre-LayerNorm transformer blocks in the parameter layout of OpenCLIP / nn.MultiheadAttention.

Keys: ``ln_1``, ``attn.in_proj_weight`` (packed q|k|v), ``attn.in_proj_bias``, ``attn.out_proj``,
``ln_2``, ``mlp.c_fc``, ``mlp.c_proj`` — so OpenCLIP state dicts map one to one.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from cosmos.layers.attention import attention
from cosmos.layers.mlp import Mlp


class MultiheadSelfAttention(nn.Module):
    """Multi-head self-attention, batch first. x: (B, L, W) → (B, L, W)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, *, is_causal: bool = False,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, is_causal=is_causal, key_padding_mask=key_padding_mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, w))


class ResidualAttentionBlock(nn.Module):
    """x ← x + Attn(LN₁ x); x ← x + MLP(LN₂ x)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0,
                 quick_gelu: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, heads)
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
