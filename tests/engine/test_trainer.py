"""The generic trainer in-process: step order, hook state in checkpoints, clipping, schedules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cosmos.engine import EvalHook, HookBase, LogitScaleClamp, ParamSchedule, Trainer
from cosmos.solver import WarmupCosine


class Quadratic(nn.Module):
    """loss = ‖w − target‖²; also owns a logit scale to be clamped."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.logit_scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, batch):
        loss = ((self.w - batch["target"]) ** 2).sum() + 0 * self.logit_scale
        return {"loss": loss}


def _batches():
    while True:
        yield {"target": torch.tensor([1.0, 2.0, 3.0]), "batch_size": 1}


class Recorder(HookBase):
    def __init__(self) -> None:
        self.calls = []

    def before_step(self) -> None:
        self.calls.append(("before", self.trainer.iter))

    def after_backward(self) -> None:
        self.calls.append(("backward", self.trainer.iter))

    def after_step(self) -> None:
        self.calls.append(("after", self.trainer.iter))


def _trainer(max_iter=3, **kwargs) -> Trainer:
    model = Quadratic()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(model, _batches(), opt, max_iter, torch.device("cpu"), **kwargs)


def test_hook_order_and_schedule() -> None:
    trainer = _trainer()
    rec = Recorder()
    trainer.register_hooks([ParamSchedule(WarmupCosine(total_steps=3, warmup_steps=2)), rec,
                            LogitScaleClamp(max_scale=100.0)])
    lrs = []

    def record_lr(self):
        lrs.append(self.trainer.optimizer.param_groups[0]["lr"])

    trainer.register_hooks([type("LR", (HookBase,), {"after_backward": record_lr})()])
    trainer.train()
    assert rec.calls == [("before", 0), ("backward", 0), ("after", 1),
                         ("before", 1), ("backward", 1), ("after", 2),
                         ("before", 2), ("backward", 2), ("after", 3)]
    assert lrs == [0.05, 0.1, 0.1]  # base 0.1 × warmup (1/2, 2/2) then cosine at its start
    assert float(trainer.model.logit_scale.detach()) == torch.log(torch.tensor(100.0)).item()
    # SGD on ‖w − t‖²: w ← w − lr·2(w − t), three steps
    w, t = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])
    for lr in lrs:
        w = w - lr * 2 * (w - t)
    assert torch.allclose(trainer.model.w, w)


def test_eval_hook_state_travels_with_checkpoint() -> None:
    trainer = _trainer(max_iter=2)
    trainer.register_hooks([EvalHook(period=1, evaluate=lambda: {"acc": 42.0})])
    trainer.train()
    state = trainer.state_dict()
    assert state["hooks"]["EvalHook"] == {"iter": 2, "results": {"acc": 42.0}}
    fresh = _trainer(max_iter=2)
    hook = EvalHook(period=1, evaluate=lambda: {"acc": -1.0})
    fresh.register_hooks([hook])
    fresh.load_state_dict(state)
    assert fresh.iter == 2 and hook.last_results == {"acc": 42.0}
    assert torch.equal(fresh.model.w, trainer.model.w)


def test_grad_clip_limits_update() -> None:
    trainer = _trainer(max_iter=1, grad_clip=0.5)
    trainer.train()
    # gradient at w=0 is −2t = [−2, −4, −6] (norm √56); clipped to norm 0.5, SGD lr 0.1
    g = torch.tensor([-2.0, -4.0, -6.0])
    expected = -0.1 * g * (0.5 / g.norm())
    assert torch.allclose(trainer.model.w, expected, atol=1e-6)
    assert abs(trainer.storage.latest()["grad_norm"][0] - float(g.norm())) < 1e-4


class EveryThird(HookBase):
    """A hook acting every 3 steps (as the metric writer with ``log_period=3``)."""

    period = 3


def test_device_values_are_read_only_at_sync_steps() -> None:
    trainer = _trainer(max_iter=7)
    trainer.register_hooks([EveryThird()])
    syncs = []
    trainer.register_hooks([type("S", (HookBase,), {
        "after_backward": lambda self: syncs.append(self.trainer.sync_step)})()])
    trainer.train()
    assert syncs == [False, False, True, False, False, True, True]  # steps 3, 6, last (7)
    # loss terms reach the storage at sync steps only; host clocks every step
    history = trainer.storage._history
    assert len(history["loss"]) == 3 and len(history["time"]) == 7
    # step 7's loss: w after 6 SGD steps of lr 0.1 on ‖w − t‖² is t·(1 − 0.8⁶)
    w6 = torch.tensor([1.0, 2.0, 3.0]) * (1 - 0.8 ** 6)
    expected = float(((w6 - torch.tensor([1.0, 2.0, 3.0])) ** 2).sum())
    assert trainer.storage.latest()["loss"] == (pytest.approx(expected, rel=1e-6), 7)


def test_nan_guard_stops_at_the_next_sync_step_naming_the_first_bad_step() -> None:
    from cosmos.engine.hooks import NaNGuard
    from cosmos.utils.errors import NonFiniteLossError

    def batches():
        for step in range(1, 100):
            value = float("nan") if step in (4, 5) else 1.0
            yield {"target": torch.tensor([value, 2.0, 3.0]), "batch_size": 1}

    model = Quadratic()
    trainer = Trainer(model, batches(), torch.optim.SGD(model.parameters(), lr=0.1), 9,
                      torch.device("cpu"))
    trainer.register_hooks([NaNGuard(), EveryThird()])
    with pytest.raises(NonFiniteLossError, match=r"^step 4: loss term 'loss' is nan; stopping "
                                                 r"before the optimizer step of step 6 \(found"):
        trainer.train()
    assert trainer.iter == 5  # steps 4 and 5 ran; step 6 stopped before its optimizer step
