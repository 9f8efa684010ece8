"""SigLIP's pairwise sigmoid loss (arXiv 2303.15343), registered as ``losses.siglip``.

Multi-process: the simple all-gather variant (not OpenCLIP's neighbour exchange). Each rank
gathers the text features of all ranks *with* gradient and scores its N local images against
all N·W texts (labels +1 only on its own diagonal block), normalising by the local N. The ranks'
losses then sum to W × the combined-batch loss (−Σ over (N·W)² pairs / (N·W)), so their mean
is the combined loss and, after DDP averages the gradients, the gradient equals the gradient of
the combined-batch loss exactly. With one process it is the plain loss.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.losses.features import Features, as_blocks
from cosmos.registry import LOSSES
from cosmos.utils.distributed import gather_with_grad, get_rank

SIGLIP_GATHER_MODES = ("local",)


def _sigmoid_labels(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """(rows, cols) of −1 with +1 at (i, i + rows·rank): this rank's positives."""
    labels = -torch.ones(rows, cols, dtype=like.dtype, device=like.device)
    idx = torch.arange(rows, device=like.device)
    labels[idx, idx + rows * get_rank()] = 1.0
    return labels


def sigmoid_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                 bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """−Σ log σ(y·(scale·image textᵀ + bias)) / N, y = +1 on matching pairs and −1 elsewhere.

    image, text: (N, D) local rows, L2-normalized; scale: exp'ed; bias: scalar or None (→ 0).
    Texts of all ranks are gathered with gradient (see the module docstring). → scalar.
    """
    texts = gather_with_grad(text)                                     # (N·W, D)
    logits = scale * image @ texts.T                                   # (N, N·W)
    if bias is not None:
        logits = logits + bias
    labels = _sigmoid_labels(image.shape[0], texts.shape[0], logits)
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


@LOSSES.register(name="siglip")
class SigLIPLoss(nn.Module):
    """Sigmoid loss, a drop-in for ``losses.clip_infonce``.

    forward(image, text, logit_scale (exp'ed), logit_bias=None) → scalar; image / text are
    (N, D) tensors or lists of (N, D) blocks (mean over all image-block × text-block pairs, the
    LIST form). Bias: a ``logit_bias`` passed in (a model's own) is used; else the loss's own
    learnable ``logit_bias`` (init ``init_logit_bias``, −10 as SigLIP — the COSMOS meta-arch
    passes no bias); with ``init_logit_bias=None`` a missing bias is 0. Only ``gather="local"``
    exists (module docstring).
    """

    def __init__(self, gather: str = "local", init_logit_bias: Optional[float] = -10.0) -> None:
        super().__init__()
        if gather not in SIGLIP_GATHER_MODES:
            raise ValueError(f"SigLIP gather must be one of {SIGLIP_GATHER_MODES}, got {gather!r}")
        self.gather = gather
        self.logit_bias = (nn.Parameter(torch.tensor(float(init_logit_bias)))
                           if init_logit_bias is not None else None)

    def forward(self, image_features: Features, text_features: Features, logit_scale: torch.Tensor,
                logit_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        bias = self.logit_bias if logit_bias is None else logit_bias
        images, texts = as_blocks(image_features), as_blocks(text_features)
        total = sum(sigmoid_loss(i, t, logit_scale, bias) for i in images for t in texts)
        return total / (len(images) * len(texts))
