"""Multi-head attention with packed q/k/v projections, the one module behind the transformer
blocks, the COSMOS cross-attention poolers and the attention maps.

Parameters are those of ``nn.MultiheadAttention(width, heads, batch_first=True)`` (kdim == vdim
== width, no bias_kv, no dropout), so OpenCLIP and official COSMOS state dicts load one to one:
``in_proj_weight`` (3W, W) packed [Q; K; V], ``in_proj_bias`` (3W), ``out_proj.{weight,bias}``.
The attention itself runs through :func:`cosmos.layers.attention.attention` (xformers / SDPA /
math, chosen per call); fused kernels do not return their weights, so
:meth:`MultiheadAttention.attention_weights` computes them in float32 for figures.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.layers.attention import attention, merge_masks

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention: self-attention (``keys=None``) or a query sequence over
    a separate key sequence (the keys are also the values).

    query (B, Lq, W), keys (B, Lk, W) → (B, Lq, W).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.width, self.heads = width, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project(self, query: torch.Tensor, keys: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, H, Lq, W/H), k and v (B, H, Lk, W/H) from the packed projection.

        Self-attention projects q|k|v in one matrix product; cross-attention projects q from the
        query and k|v in one product from the keys.
        """
        b, lq, w = query.shape
        h, hd = self.heads, w // self.heads
        if keys is None:
            qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
            q, k, v = qkv.view(b, lq, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
            return q, k, v
        self._check_keys(query, keys)
        w_q, w_kv = self.in_proj_weight.split([w, 2 * w])
        b_q, b_kv = self.in_proj_bias.split([w, 2 * w])
        q = F.linear(query, w_q, b_q).view(b, lq, h, hd).transpose(1, 2)
        kv = F.linear(keys, w_kv, b_kv).view(b, keys.shape[1], 2, h, hd)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, query: torch.Tensor, keys: Optional[torch.Tensor] = None,
                key_padding_mask: Optional[torch.Tensor] = None, *,
                is_causal: bool = False) -> torch.Tensor:
        """query (B, Lq, W); keys (B, Lk, W) or None (self-attention); key_padding_mask (B, Lk)
        bool, True = ignore; is_causal as in :func:`~cosmos.layers.attention.attention`
        → (B, Lq, W). A row whose keys are all masked gives NaN."""
        self._check_mask(query, keys, key_padding_mask)
        q, k, v = self.project(query, keys)
        out = attention(q, k, v, key_padding_mask=key_padding_mask, is_causal=is_causal)
        return self.merge_heads(out)

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        """Per-head outputs (B, H, Lq, W/H) → ``out_proj`` of their concatenation (B, Lq, W)."""
        b, _, lq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, self.width))

    def attention_weights(self, query: torch.Tensor, keys: Optional[torch.Tensor] = None,
                          key_padding_mask: Optional[torch.Tensor] = None, *,
                          is_causal: bool = False) -> torch.Tensor:
        """softmax(q kᵀ / √(W/H) + masks) for the same inputs as :meth:`forward`
        → (B, H, Lq, Lk) float32, each row summing to 1."""
        self._check_mask(query, keys, key_padding_mask)
        q, k, _ = self.project(query, keys)
        scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])
        mask = merge_masks(None, key_padding_mask, is_causal, q, k)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1)

    def apply_weights(self, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The output for given attention weights: ``out_proj(weights · V)``.

        weights (B, H, Lq, Lk), keys (B, Lk, W) (for self-attention: the input) → (B, Lq, W).
        """
        b, lk, w = keys.shape
        v = F.linear(keys, self.in_proj_weight[2 * w:], self.in_proj_bias[2 * w:])
        v = v.view(b, lk, self.heads, w // self.heads).transpose(1, 2)
        return self.merge_heads(weights.to(v.dtype) @ v)

    def _check_keys(self, query: torch.Tensor, keys: torch.Tensor) -> None:
        if keys.dim() != 3 or keys.shape[0] != query.shape[0] or keys.shape[2] != query.shape[2]:
            raise ValueError(f"keys {tuple(keys.shape)} do not match query {tuple(query.shape)}")

    def _check_mask(self, query: torch.Tensor, keys: Optional[torch.Tensor],
                    key_padding_mask: Optional[torch.Tensor]) -> None:
        if key_padding_mask is None:
            return
        expected = (query.shape[0], (query if keys is None else keys).shape[1])
        if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != expected:
            raise ValueError(f"key_padding_mask must be a bool tensor of shape {expected}, got "
                             f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
