"""Vision transformer image tower in OpenCLIP's layout (``visual.*`` keys)."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.layers.blocks import Transformer
from cosmos.registry import BACKBONES


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Resize a (1 + g², W) positional table to a grid_h × grid_w patch grid.

    Follows the official COSMOS / DINO rule: bicubic, ``scale_factor = (g' + 0.1) / g``,
    align_corners False, class position kept. The table is returned as is when the grid matches.
    """
    n = pos_embed.shape[0] - 1
    if torch.jit.is_tracing():  # sizes are traced tensors there (FLOP counting): plain numbers
        n, grid_h, grid_w = int(n), int(grid_h), int(grid_w)
    g = int(round(n ** 0.5))
    if grid_h == g and grid_w == g:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:1], pos_embed[1:]
    width = pos_embed.shape[-1]
    patch_pos = patch_pos.reshape(1, g, g, width).permute(0, 3, 1, 2)
    scale_factor = ((grid_h + 0.1) / g, (grid_w + 0.1) / g)
    patch_pos = F.interpolate(patch_pos.float(), scale_factor=scale_factor,
                              mode="bicubic", align_corners=False).to(pos_embed.dtype)
    if patch_pos.shape[-2:] != (grid_h, grid_w):
        raise RuntimeError(f"positional interpolation gave {tuple(patch_pos.shape[-2:])}, "
                           f"expected {(grid_h, grid_w)}")
    return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(-1, width)], dim=0)


@BACKBONES.register(name="vit")
class VisionTransformer(nn.Module):
    """ViT: patchify → [CLS] + positions → ln_pre → blocks → ln_post → CLS @ proj.

    Takes any input size that is a multiple of the patch size (positions are interpolated).
    forward(images (B, 3, H, W)) → (pooled (B, output_dim), patch tokens (B, H/p·W/p, width)).
    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, width: int = 768,
                 layers: int = 12, heads: int = 12, mlp_ratio: float = 4.0, output_dim: int = 512,
                 grad_checkpointing: bool = False, quick_gelu: bool = False) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.width, self.output_dim = (
            image_size, patch_size, width, output_dim)
        grid = image_size // patch_size
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio, grad_checkpointing,
                                       quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def fsdp_units(self) -> List[nn.Module]:
        """Submodules FSDP shards separately: the transformer blocks, in order."""
        return list(self.transformer.resblocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, g², W)
        cls = self.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + interpolate_pos_embed(self.positional_embedding, h // p, w // p).to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        x = self.ln_post(x)
        return x[:, 0] @ self.proj, x[:, 1:]
