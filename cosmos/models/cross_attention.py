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

from cosmos.layers.multihead_attention import MultiheadAttention
from cosmos.registry import HEADS

__all__ = ["CrossAttention", "AttentionalCrossPooler", "TokenMapping", "cross_modal_embedding"]


# Same parameters and maths as ``nn.MultiheadAttention(d_model, heads, batch_first=True)``
# called as ``mha(query, keys, keys)``: the shared packed-projection module.
CrossAttention = MultiheadAttention


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
        self.attn = MultiheadAttention(d_model, heads)

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
