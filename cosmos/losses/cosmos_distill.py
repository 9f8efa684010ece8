"""COSMOS cross-modal distillation loss (reference/cosmos-official.md §4.2)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from cosmos.losses.contrastive import GATHER_MODES, list_infonce
from cosmos.registry import LOSSES


@LOSSES.register(name="cosmos_infonce")
class CosmosDistillLoss(nn.Module):
    """¼·[LIST(X, u) + LIST(X, w) + LIST(Y, u) + LIST(Y, w)] at the distillation temperature.

    X: student image cross-modal embeddings (one (B, D) block per image crop), Y: student text
    cross-modal embeddings (one block per text crop), u / w: the teacher's embeddings of the
    global image crops / global captions. All L2-normalized; teacher blocks are detached here.
    Same-view pairs are not excluded (as the official code).
    """

    def __init__(self, gather: str = "local") -> None:
        super().__init__()
        if gather not in GATHER_MODES:
            raise ValueError(f"gather must be one of {GATHER_MODES}, got {gather!r}")
        self.gather = gather

    def forward(self, img_cross: Sequence[torch.Tensor], txt_cross: Sequence[torch.Tensor],
                teacher_img: Sequence[torch.Tensor], teacher_txt: Sequence[torch.Tensor],
                distill_scale: torch.Tensor) -> torch.Tensor:
        u = [t.detach() for t in teacher_img]
        w = [t.detach() for t in teacher_txt]
        terms = [list_infonce(student, teacher, distill_scale, self.gather)
                 for student in (img_cross, txt_cross) for teacher in (u, w)]
        return 0.25 * sum(terms)
