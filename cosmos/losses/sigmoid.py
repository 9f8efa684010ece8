"""SigLIP's pairwise sigmoid loss, with its own learnable bias (so it swaps in by name)."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.registry import LOSSES
from cosmos.utils.distributed import gather_with_grad, get_rank

Features = Union[torch.Tensor, Sequence[torch.Tensor]]


def sigmoid_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                 bias: torch.Tensor) -> torch.Tensor:
    """−Σ log σ(y·(scale·x tᵀ + bias)) / N with y = +1 on matching pairs, −1 elsewhere.

    image, text: (N, D) local rows. Text features of all ranks are gathered with gradient, so
    each rank also scores its images against the other ranks' texts (all negatives); the sum is
    divided by the local N (SigLIP's normalisation). After DDP averaging the gradient equals
    the combined-batch loss's gradient (combined loss normalised by the local N).
    """
    texts = gather_with_grad(text)
    logits = scale * image @ texts.T + bias                              # (N, N·W)
    labels = -torch.ones_like(logits)
    rows = torch.arange(image.shape[0], device=image.device)
    labels[rows, rows + image.shape[0] * get_rank()] = 1.0
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


@LOSSES.register(name="siglip")
class SigLIPLoss(nn.Module):
    """Sigmoid loss; ``logit_bias`` is a learnable parameter of the loss (init −10, as SigLIP).

    forward(image, text, logit_scale (exp'ed), logit_bias=None): tensors (N, D) or lists of
    blocks (mean over all image-block × text-block pairs). A bias passed in (a model's own
    ``logit_bias``) takes precedence over the loss's parameter.
    """

    def __init__(self, init_logit_bias: float = -10.0) -> None:
        super().__init__()
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias)))

    def forward(self, image_features: Features, text_features: Features, logit_scale: torch.Tensor,
                logit_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        bias = self.logit_bias if logit_bias is None else logit_bias
        images = [image_features] if isinstance(image_features, torch.Tensor) else list(image_features)
        texts = [text_features] if isinstance(text_features, torch.Tensor) else list(text_features)
        total = sum(sigmoid_loss(i, t, logit_scale, bias) for i in images for t in texts)
        return total / (len(images) * len(texts))
