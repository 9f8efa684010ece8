"""One attention function with a backend chosen per call.

Backends: ``sdpa`` (``torch.nn.functional.scaled_dot_product_attention``) and ``math`` (a plain
reference). ``COSMOS_ATTN_BACKEND=auto|sdpa|math`` forces one. The backend in use is logged once
per (backend, device, dtype), never warned.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Optional

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)
_BACKENDS = ("auto", "sdpa", "math")
_announced: set = set()


def attention_backend(q: Optional[torch.Tensor] = None) -> str:
    """Name of the backend that :func:`attention` would use for ``q`` (or in general)."""
    forced = os.environ.get("COSMOS_ATTN_BACKEND", "auto").strip().lower() or "auto"
    if forced not in _BACKENDS:
        raise ValueError(f"COSMOS_ATTN_BACKEND={forced!r}: expected one of {', '.join(_BACKENDS)}")
    return "sdpa" if forced == "auto" else forced


def _announce(backend: str, q: torch.Tensor) -> None:
    key = (backend, q.device.type, q.dtype)
    if key not in _announced:
        _announced.add(key)
        logger.info("attention backend: %s (device=%s, dtype=%s)", backend, q.device.type,
                    str(q.dtype).replace("torch.", ""))


def _merge_masks(attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor],
                 is_causal: bool, q: torch.Tensor, k: torch.Tensor) -> Optional[torch.Tensor]:
    """Combine masks into one boolean mask (True = attend), broadcastable to (B, H, Lq, Lk)."""
    mask = None
    if attn_mask is not None:
        mask = attn_mask if attn_mask.dtype == torch.bool else None
        if mask is None:  # additive float mask: keep as float
            return attn_mask if key_padding_mask is None else attn_mask.masked_fill(
                key_padding_mask[:, None, None, :], float("-inf"))
    if is_causal:
        lq, lk = q.shape[-2], k.shape[-2]
        causal = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
        mask = causal if mask is None else mask & causal
    if key_padding_mask is not None:
        keep = ~key_padding_mask[:, None, None, :]
        mask = keep if mask is None else mask & keep
    return mask


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              attn_mask: Optional[torch.Tensor] = None,
              key_padding_mask: Optional[torch.Tensor] = None,
              is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention.

    Args:
        q: (B, H, Lq, D); k, v: (B, H, Lk, D). Lq and Lk may differ (cross-attention).
        attn_mask: bool (True = attend) or additive float, broadcastable to (B, H, Lq, Lk).
        key_padding_mask: (B, Lk) bool, True marks padding keys to ignore.
        is_causal: mask keys after each query position.
    Returns:
        (B, H, Lq, D)
    """
    backend = attention_backend(q)
    _announce(backend, q)
    if backend == "sdpa":
        if attn_mask is None and key_padding_mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        mask = _merge_masks(attn_mask, key_padding_mask, is_causal, q, k)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return math_attention(q, k, v, mask=_merge_masks(attn_mask, key_padding_mask, is_causal, q, k))


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reference implementation: softmax(q kᵀ / √d + mask) v, computed in float32."""
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)
