"""EMA teacher: a frozen deep copy of the student, updated with one fused multiply-add."""
from __future__ import annotations

import copy
from typing import List

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` with gradients off, in eval mode (make it before DDP wrapping)."""
    teacher = copy.deepcopy(student)
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update(teacher_params: List[torch.Tensor], student_params: List[torch.Tensor],
               momentum: float) -> None:
    """θ_T ← m·θ_T + (1 − m)·θ_S over aligned lists, in one fused foreach call."""
    if len(teacher_params) != len(student_params):
        raise ValueError(f"teacher has {len(teacher_params)} parameters, student "
                         f"{len(student_params)}")
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)
