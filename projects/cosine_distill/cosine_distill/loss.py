"""Cosine regression of the student's cross-modal embeddings onto the teacher's embeddings."""
from __future__ import annotations

from typing import Sequence

import torch

from cosmos.registry import LOSSES


@LOSSES.register(name="cosine_distill")
class CosineDistillLoss(torch.nn.Module):
    """mean over (student block, teacher block) pairs of mean_b (1 − ⟨x_b, t_b⟩).

    Same call as ``losses.cosmos_infonce``: img_cross / txt_cross are lists of (B, D) student
    cross-modal embeddings, teacher_img / teacher_txt lists of (B, D) teacher embeddings, all
    L2-normalized. There are no negatives, so ``distill_scale`` (the temperature) is unused
    (under DDP, set ``find_unused_parameters`` or freeze ``distill_logit_scale``).
    """

    def forward(self, img_cross: Sequence[torch.Tensor], txt_cross: Sequence[torch.Tensor],
                teacher_img: Sequence[torch.Tensor], teacher_txt: Sequence[torch.Tensor],
                distill_scale: torch.Tensor) -> torch.Tensor:
        targets = torch.stack([t.detach() for t in (*teacher_img, *teacher_txt)])   # (T, B, D)
        student = torch.stack([*img_cross, *txt_cross])                             # (S, B, D)
        cosine = torch.einsum("sbd,tbd->stb", student, targets)                      # (S, T, B)
        return (1.0 - cosine).mean()
