"""Cross-modal heads of COSMOS: token mappings and the attentional cross pooler.

Parameter layout follows the official code (``nn.MultiheadAttention`` with kdim == vdim == d), so
released state dicts load one to one: ``attn.in_proj_weight`` (3d, d) packed [Q; K; V],
``attn.in_proj_bias`` (3d), ``attn.out_proj.{weight,bias}``, ``ln_q.*``, ``ln_k.*``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.layers.attention import attention
from cosmos.registry import HEADS

__all__ = ["CrossAttention", "AttentionalCrossPooler", "TokenMapping", "cross_modal_embedding"]


class CrossAttention(nn.Module):
    """Multi-head attention of a query sequence over a separate key/value sequence, batch first.

    Same parameters and maths as ``nn.MultiheadAttention(d_model, heads, batch_first=True)``
    called as ``mha(query, keys, keys)`` (no dropout, no bias_kv, no zero-attn), but computed
    through :func:`cosmos.layers.attention.attention` so the backend selection applies.
    """

    def __init__(self, d_model: int = 512, heads: int = 8) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_model, self.heads = d_model, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """query (B, Lq, d), keys (B, Lk, d) (also the values), key_padding_mask (B, Lk) bool
        with True = ignore → (B, Lq, d). A row whose keys are all padding gives NaN."""
        b, lq, d = query.shape
        lk = keys.shape[1]
        if keys.shape[0] != b or keys.shape[2] != d:
            raise ValueError(f"keys {tuple(keys.shape)} do not match query {tuple(query.shape)}")
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (b, lk):
                raise ValueError(f"key_padding_mask must be a bool tensor of shape {(b, lk)}, got "
                                 f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
        h, hd = self.heads, d // self.heads
        w_q, w_kv = self.in_proj_weight.split([d, 2 * d])
        b_q, b_kv = self.in_proj_bias.split([d, 2 * d])
        q = F.linear(query, w_q, b_q).view(b, lq, h, hd).transpose(1, 2)  # (B, H, Lq, hd)
        k, v = F.linear(keys, w_kv, b_kv).view(b, lk, 2, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, key_padding_mask=key_padding_mask)  # (B, H, Lq, hd)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, d))


@HEADS.register(name="cross_attention_pooler")
class AttentionalCrossPooler(nn.Module):
    """Official COSMOS cross pooler: ``attn(LN_q(query), LN_k(tokens), LN_k(tokens))``.

    There is NO residual and NO normalisation inside the module: the official ``CLIP.forward``
    adds the raw (un-LayerNormed) query and L2-normalises outside, see
    :func:`cross_modal_embedding`.
    """

    def __init__(self, d_model: int = 512, heads: int = 8) -> None:
        super().__init__()
        self.d_model = d_model
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(d_model)
        self.attn = CrossAttention(d_model, heads)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """query (B, Lq, d) or (B, d), tokens (B, Lk, d), key_padding_mask (B, Lk) bool
        (True = ignore) → same shape as ``query``."""
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query
        out = self.attn(self.ln_q(q), self.ln_k(tokens), key_padding_mask)
        return out.squeeze(1) if single else out


def cross_modal_embedding(pooler: AttentionalCrossPooler, query: torch.Tensor, tokens: torch.Tensor,
                          key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Official cross-modal embedding: ``normalize(query + pooler(query, tokens))``.

    query (B, d) (raw, unnormalised global embedding), tokens (B, Lk, d) → (B, d), unit L2 norm.
    """
    return F.normalize(query + pooler(query, tokens, key_padding_mask), dim=-1)


@HEADS.register(name="token_mapping")
class TokenMapping(nn.Linear):
    """Linear map of encoder tokens into the shared space (keys ``weight``, ``bias``).

    Official sizes: image 768 → 512, text 512 → 512. tokens (..., in_dim) → (..., out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim, bias=True)
