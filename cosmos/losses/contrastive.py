"""Symmetric InfoNCE (CLIP loss) with gradient-carrying feature gathering across ranks."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.registry import LOSSES
from cosmos.utils.distributed import gather_with_grad, get_rank


def infonce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """½·[CE(scale·a bᵀ) + CE(scale·b aᵀ)] with row i of ``a`` matching row i of ``b``.

    Local-loss form: ``a``/``b`` are this rank's rows (N, D); the columns are gathered from all
    ranks with gradient, so after DDP averaging the gradient equals the single-big-batch one.
    """
    a_all, b_all = gather_with_grad(a), gather_with_grad(b)
    labels = torch.arange(a.shape[0], device=a.device) + a.shape[0] * get_rank()
    loss_a = F.cross_entropy(scale * a @ b_all.T, labels)
    loss_b = F.cross_entropy(scale * b @ a_all.T, labels)
    return 0.5 * (loss_a + loss_b)


@LOSSES.register(name="clip_infonce")
class ClipInfoNCE(nn.Module):
    """CLIP's symmetric contrastive loss on L2-normalized embeddings.

    forward(image (N, D), text (N, D), logit_scale: exp'ed scalar) → scalar.
    """

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor, logit_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        return infonce(image_features, text_features, logit_scale)
