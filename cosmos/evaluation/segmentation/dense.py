"""Dense (per-patch) image features for training-free segmentation, SCLIP style.

Patch tokens after ``ln_post`` are multiplied by ``visual.proj`` (the CLS projection, not the
COSMOS token mapping; official ``src/training/clip_segmentor.py``) and L2-normalised.
Optionally the last block's self-attention is swapped for SCLIP's Correlative Self-Attention
(CSA) through a forward hook on that block, so the model code is untouched:

    A = softmax(q qᵀ / √d) + softmax(k kᵀ / √d)   (per head; q, k, v from the packed in-proj
    x ← x + out_proj(A v) with q, k, v of LN₁(x);  x ← x + MLP(LN₂ x)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.utils.errors import CosmosError


def _check_vit(visual: nn.Module) -> None:
    for attr in ("transformer", "ln_post", "proj", "patch_size"):
        if not hasattr(visual, attr):
            raise CosmosError(f"dense features need a cosmos VisionTransformer image tower "
                              f"(missing '{attr}' on {type(visual).__name__})")


def csa_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Correlative self-attention with the weights of ``attn`` (a
    :class:`~cosmos.layers.multihead_attention.MultiheadAttention`).

    x: (B, L, W), already layer-normed → (B, L, W) = out_proj(A v).
    """
    q, k, v = attn.project(x)  # (B, H, L, d)
    scale = q.shape[-1] ** -0.5
    weights = (torch.softmax(q @ q.transpose(-2, -1) * scale, dim=-1)
               + torch.softmax(k @ k.transpose(-2, -1) * scale, dim=-1))
    return attn.merge_heads(weights @ v)


def csa_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A ResidualAttentionBlock with CSA in place of its attention. x: (B, L, W) → (B, L, W)."""
    x = x + csa_attention(block.attn, block.ln_1(x))
    return x + block.mlp(block.ln_2(x))


@contextlib.contextmanager
def csa_last_block(visual: nn.Module) -> Iterator[None]:
    """Within the context, the last transformer block of ``visual`` computes CSA (forward hook)."""
    _check_vit(visual)
    block = visual.transformer.resblocks[-1]
    handle = block.register_forward_hook(lambda mod, args, out: csa_block_forward(mod, args[0]))
    try:
        yield
    finally:
        handle.remove()


def dense_features(visual: nn.Module, images: torch.Tensor, use_csa: bool = False) -> torch.Tensor:
    """images (B, 3, H, W) normalised → L2-normalised features (B, D, H//p, W//p).

    Trailing rows / columns that do not fill a whole patch are dropped, as a stride-p patch
    convolution does in the official (OpenAI-CLIP based) code.
    """
    _check_vit(visual)
    p = visual.patch_size
    h, w = images.shape[-2] // p, images.shape[-1] // p
    if h < 1 or w < 1:
        raise CosmosError(f"image {tuple(images.shape[-2:])} is smaller than one {p}px patch")
    images = images[..., : h * p, : w * p]
    ctx = csa_last_block(visual) if use_csa else contextlib.nullcontext()
    with ctx:
        tokens = visual(images)[1]  # (B, h·w, width), after ln_post
    feats = F.normalize(tokens @ visual.proj.to(tokens.dtype), dim=-1)
    return feats.transpose(1, 2).reshape(images.shape[0], -1, h, w)
