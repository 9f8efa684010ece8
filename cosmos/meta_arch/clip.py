"""CLIP meta-architecture: a batch of (image, caption) pairs in, loss terms out."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from cosmos.models.attention_source import AttentionSource
from cosmos.registry import META_ARCHS


@META_ARCHS.register(name="clip")
class CLIP(nn.Module):
    """Contrastive image-text pretraining.

    Batch keys: ``images`` (B, 3, H, W) float, ``tokens`` (B, L) int64.
    Returns ``{"clip_loss", "loss"}``; ``loss`` is what the trainer minimises.
    """

    def __init__(self, model: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        image, text = self.model(batch["images"], batch["tokens"])
        bias = getattr(self.model, "logit_bias", None)
        clip_loss = self.loss(image, text, self.model.logit_scale.exp(), bias)
        return {"clip_loss": clip_loss, "loss": clip_loss}

    def encoders(self) -> Dict[str, nn.Module]:
        """Dual encoders to evaluate and export, by name."""
        return {"student": self.model}

    def attention_sources(self) -> Dict[str, AttentionSource]:
        """Per encoder, the modules its attention maps are read from (the figures)."""
        return {"student": AttentionSource(self.model, note="the model has no cross-attention "
                                                            "modules")}

    def extra_metrics(self) -> Dict[str, float]:
        """Scalars worth logging besides the losses."""
        return {"logit_scale": float(self.model.logit_scale.detach().exp())}
