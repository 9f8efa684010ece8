"""COSMOS cross-modal distillation loss L_cosmos (arXiv 2412.01814; the official repository's
``src/open_clip/loss.py``, ``COSMOSLoss``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from cosmos.losses.contrastive import check_gather, list_infonce
from cosmos.registry import LOSSES


@LOSSES.register(name="cosmos_infonce")
class CosmosDistillLoss(nn.Module):
    """¼·[LIST(X, u) + LIST(X, w) + LIST(Y, u) + LIST(Y, w)] at the distillation temperature.

    forward(img_cross, txt_cross, teacher_img, teacher_txt, distill_scale) → scalar:
      img_cross  X: 8 × (B, D) student image cross-modal embeddings, crop-major (G1, G2, L1..L6);
      txt_cross  Y: 8 × (B, D) student text cross-modal embeddings, one block per caption crop;
      teacher_img u: 2 × (B, D) teacher embeddings of the global image crops;
      teacher_txt w: 2 × (B, D) teacher embeddings of the two global captions;
      distill_scale: exp(distill_logit_scale), scalar.
    All inputs are already L2-normalized (not re-normalized here); rows aligned by sample.
    Teacher blocks are detached here. Same-view pairs are not excluded (as the official code).
    ``gather``: see :func:`cosmos.losses.contrastive.infonce` (gradient scaling included).
    """

    def __init__(self, gather: str = "local") -> None:
        super().__init__()
        self.gather = check_gather(gather)

    def forward(self, img_cross: Sequence[torch.Tensor], txt_cross: Sequence[torch.Tensor],
                teacher_img: Sequence[torch.Tensor], teacher_txt: Sequence[torch.Tensor],
                distill_scale: torch.Tensor) -> torch.Tensor:
        u = [t.detach() for t in teacher_img]
        w = [t.detach() for t in teacher_txt]
        terms = [list_infonce(student, teacher, distill_scale, self.gather)
                 for student in (img_cross, txt_cross) for teacher in (u, w)]
        return 0.25 * sum(terms)
