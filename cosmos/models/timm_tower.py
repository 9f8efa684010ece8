"""Image tower wrapping any timm vision transformer by name (``backbones.timm_vit``).

timm is imported lazily in the constructor: importing it costs several seconds.
"""
from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torch import nn

from cosmos.registry import BACKBONES
from cosmos.utils.errors import CosmosError


@BACKBONES.register(name="timm_vit")
class TimmImageTower(nn.Module):
    """timm ViT → (pooled @ proj, patch tokens).

    Built with ``num_classes=0, dynamic_img_size=True``, so any input size that is a multiple of
    the patch size works (e.g. 224 px global and 96 px local crops).
    forward(images (B, 3, H, W)) → (pooled (B, output_dim), patch tokens (B, N, width)), where
    pooled is the model's pre-logits feature (the CLS token for ``global_pool='token'``) and the
    patch tokens follow the final norm with the prefix (class / register) tokens removed.
    """

    def __init__(self, model_name: str = "vit_base_patch16_224", image_size: int = 224,
                 output_dim: int = 512, pretrained: bool = False, grad_checkpointing: bool = False,
                 **timm_kwargs: Any) -> None:
        super().__init__()
        import timm  # lazy: slow import

        try:
            self.trunk = timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                           dynamic_img_size=True, img_size=image_size,
                                           **timm_kwargs)
        except RuntimeError as err:
            raise CosmosError(f"cannot create timm model '{model_name}': {err}") from err
        self.model_name, self.image_size, self.output_dim = model_name, image_size, output_dim
        self.width = int(self.trunk.num_features)
        self.num_prefix_tokens = int(getattr(self.trunk, "num_prefix_tokens", 1))
        self.proj = nn.Parameter(self.width ** -0.5 * torch.randn(self.width, output_dim))
        if grad_checkpointing:
            self.set_grad_checkpointing(True)

    def fsdp_units(self) -> List[nn.Module]:
        """Submodules FSDP shards separately: the trunk's blocks, in order (none if the timm
        model has no ``blocks``)."""
        return list(self.trunk.blocks) if hasattr(self.trunk, "blocks") else []

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.trunk.set_grad_checkpointing(enable)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) → (pooled (B, output_dim), patch tokens (B, N, width))."""
        x = self.trunk.forward_features(images)  # (B, prefix + N, width), after the final norm
        pooled = self.trunk.forward_head(x, pre_logits=True)  # (B, width)
        return pooled @ self.proj, x[:, self.num_prefix_tokens:]
