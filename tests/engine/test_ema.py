"""EMA teacher: frozen copy, fused update against hand-computed values, schedules, hook order."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cosmos.ema import ConstantMomentum, ema_update, make_teacher
from cosmos.engine.ema_hook import EMAHook
from cosmos.engine import Trainer
from cosmos.registry import EMA_SCHEDULERS


def test_teacher_is_frozen_copy() -> None:
    student = nn.Linear(3, 2)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), teacher.parameters()))
    pairs = zip(student.parameters(), teacher.parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in pairs)


def test_ema_update_by_hand() -> None:
    t = [torch.tensor([1.0, 2.0]), torch.tensor(4.0)]
    s = [torch.tensor([3.0, -2.0]), torch.tensor(0.0)]
    ema_update(t, s, 0.9)
    # 0.9·1 + 0.1·3 = 1.2; 0.9·2 + 0.1·(−2) = 1.6; 0.9·4 + 0 = 3.6
    assert torch.allclose(t[0], torch.tensor([1.2, 1.6]))
    assert torch.allclose(t[1], torch.tensor(3.6))
    ema_update(t, s, 1.0)
    assert torch.allclose(t[0], torch.tensor([1.2, 1.6]))
    ema_update(t, s, 0.0)
    assert torch.equal(t[0], s[0])


def test_momentum_schedules() -> None:
    assert EMA_SCHEDULERS.get("constant")(0.99)(12345) == 0.99
    cos = EMA_SCHEDULERS.get("cosine")(total_steps=100, base_momentum=0.99)
    assert cos(0) == pytest.approx(0.99) and cos(100) == pytest.approx(1.0)
    assert cos(50) == pytest.approx(1 + 0.5 * (1 + math.cos(math.pi / 2)) * (0.99 - 1))
    assert cos(1000) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ConstantMomentum(1.5)


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Parameter(torch.tensor([0.0]))
        self.teacher = nn.Parameter(torch.tensor([0.0]), requires_grad=False)

    def forward(self, batch):
        return {"loss": ((self.student - 1.0) ** 2).sum()}

    def ema_parameters(self):
        return [self.teacher], [self.student]


def _run(official_order: bool) -> float:
    model = _Pair()
    opt = torch.optim.SGD([model.student], lr=0.25)
    batches = iter(lambda: {"batch_size": 1}, None)
    trainer = Trainer(model, batches, opt, 2, torch.device("cpu"))
    trainer.register_hooks([EMAHook(ConstantMomentum(0.5), before_optimizer_step=official_order)])
    trainer.train()
    return float(model.teacher)


def test_hook_order_after_step_and_official() -> None:
    # SGD on (s − 1)², lr 0.25: s goes 0 → 0.5 → 0.75.
    # after the step (default): t = ½(½·0 + ½·0.5) + ½·0.75 = 0.125 + 0.375 = 0.5
    assert _run(False) == pytest.approx(0.5)
    # official order, before the step: t = ½(½·0 + ½·0) + ½·0.5 = 0.25 (one step behind)
    assert _run(True) == pytest.approx(0.25)
