"""A ViT whose patchify is a small convolutional stem (``backbones.conv_stem_vit``).

Xiao et al., "Early Convolutions Help Transformers See Better" (arXiv 2106.14881): the
p × p stride-p patch projection is replaced by log2(p) stride-2 3 × 3 convolutions (each
followed by a per-position LayerNorm over channels and a GELU) and a 1 × 1 convolution to the
transformer width. The token grid is the same (H/p × W/p), so everything downstream (class
token, interpolated positions, blocks, ``ln_post``, ``proj``) is the core ViT's, and the tower
satisfies the image-tower contract of ``cosmos/models/base.py``, dense segmentation included.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from cosmos.layers.blocks import Transformer
from cosmos.models.vit import interpolate_pos_embed
from cosmos.registry import BACKBONES


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W), position by position (keeps the stem local)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_stem(patch_size: int, width: int, stem_channels: int) -> nn.Sequential:
    """log2(patch_size) × [3×3 stride-2 conv → ChannelNorm → GELU] → 1×1 conv to ``width``.

    Channels start at ``stem_channels`` and double per stage (at most ``width``).
    (B, 3, H, W) → (B, width, H/p, W/p); output position (i, j) sees input pixels
    [p·i − (p − 1), p·i + (p − 1)] × [p·j − (p − 1), p·j + (p − 1)] (receptive field 2p − 1).
    """
    stages = patch_size.bit_length() - 1
    if patch_size < 2 or patch_size != 2 ** stages:
        raise ValueError(f"conv_stem_vit needs a power-of-two patch_size >= 2, got {patch_size}")
    layers: List[nn.Module] = []
    channels_in = 3
    for k in range(stages):
        channels = min(width, stem_channels * 2 ** k)
        layers += [nn.Conv2d(channels_in, channels, 3, stride=2, padding=1, bias=False),
                   ChannelNorm(channels), nn.GELU()]
        channels_in = channels
    layers.append(nn.Conv2d(channels_in, width, 1))
    return nn.Sequential(*layers)


@BACKBONES.register(name="conv_stem_vit")
class ConvStemViT(nn.Module):
    """conv stem → [CLS] + positions → ln_pre → blocks → ln_post → CLS @ proj.

    Arguments as ``backbones.vit`` (so a config swaps the target and keeps its values), plus
    ``stem_channels`` (channels of the first stem stage; default width / 2^(stages − 1)).
    forward(images (B, 3, H, W), H and W multiples of patch_size) →
    (pooled (B, output_dim), patch tokens (B, H/p·W/p, width)).
    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, width: int = 768,
                 layers: int = 12, heads: int = 12, mlp_ratio: float = 4.0, output_dim: int = 512,
                 stem_channels: Optional[int] = None, grad_checkpointing: bool = False,
                 quick_gelu: bool = False) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size "
                             f"{patch_size}")
        self.image_size, self.patch_size, self.width, self.output_dim = (
            image_size, patch_size, width, output_dim)
        stages = max(patch_size.bit_length() - 1, 1)
        self.stem = conv_stem(patch_size, width, stem_channels or max(width >> (stages - 1), 8))
        grid = image_size // patch_size
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio, grad_checkpointing,
                                       quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def fsdp_units(self) -> List[nn.Module]:
        """The transformer blocks; the stem is small and is sharded with the root."""
        return list(self.transformer.resblocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.stem(images).flatten(2).transpose(1, 2)  # (B, h/p · w/p, width)
        cls = self.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + interpolate_pos_embed(self.positional_embedding, h // p, w // p).to(x.dtype)
        x = self.ln_post(self.transformer(self.ln_pre(x)))
        return x[:, 0] @ self.proj, x[:, 1:]
