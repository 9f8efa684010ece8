"""Step-boundary timestamps of a trainer's steps, and the split of a step into phases."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from cosmos.engine.benchmark.batches import TimedLoader
from cosmos.engine.benchmark.clock import Clock
from cosmos.engine.hook_base import HookBase

# phase names, in table order
STUDENT, TEACHER, LOSS, BACKWARD, OPTIMIZER, EMA, OTHER = (
    "student forward", "teacher forward", "loss", "backward", "optimizer", "EMA", "other")


@dataclass
class PhaseReport:
    """Mean milliseconds per phase over the instrumented steps; ``step_ms`` is their mean length.

    Phases: student forward (the meta-architecture's forward minus teacher and loss modules),
    teacher forward, loss (the loss modules), backward (end of forward → after backward),
    optimizer (after the after-backward hooks → the after-step hooks: grad clip, optimizer step,
    scaler, loss logging), EMA (the EMA hook), other (the rest: data, schedule, NaN guard,
    logit-scale clamp).
    """

    steps: int
    step_ms: float
    ms: Dict[str, float] = field(default_factory=dict)


class _Marker(HookBase):
    """Reports the trainer's hook calls to a :class:`StepTimer` under ``label``."""

    def __init__(self, timer: "StepTimer", label: str) -> None:
        self.timer, self.label = timer, label

    def before_step(self) -> None:
        self.timer.on(self.label, "before_step", self.trainer.iter)

    def after_backward(self) -> None:
        self.timer.on(self.label, "after_backward", self.trainer.iter)

    def after_step(self) -> None:
        self.timer.on(self.label, "after_step", self.trainer.iter)


def _region_role(name: str) -> Optional[str]:
    """The phase of a top-level child of the meta-architecture: teacher, loss or None (student)."""
    if name.startswith("teacher"):
        return TEACHER
    if "loss" in name.lower():
        return LOSS
    return None


class StepTimer:
    """Step-boundary timestamps for throughput, then per-phase timings in instrumented steps.

    Steps ``[0, warmup)`` are untimed, ``[warmup, warmup + steps)`` get one timestamp at each
    boundary (throughput), the following ones are instrumented: module hooks on the meta-arch
    (forward), on every module of its teacher and loss children (not inside compiled modules)
    and markers before, around the EMA hook and after the trainer's hooks.
    """

    def __init__(self, model: nn.Module, clock: Clock, warmup: int, steps: int,
                 loader: Optional[TimedLoader] = None) -> None:
        self.model, self.clock, self.loader = model, clock, loader
        self.warmup, self.steps = warmup, steps
        self.step_marks: List[Any] = []
        self.records: List[Dict[str, Any]] = []
        self.peak_bytes: Optional[int] = None
        self.data_waits: List[float] = []
        self._record: Optional[Dict[str, Any]] = None
        self._handles: List[Any] = []
        self._depth: Dict[str, int] = {}
        self._open: Dict[str, Any] = {}
        self.roles = sorted({r for n, _ in model.named_children() if (r := _region_role(n))})
        self.has_ema = False

    # -- trainer hooks --------------------------------------------------------------
    def wrap_hooks(self, hooks: List[HookBase]) -> List[HookBase]:
        """``hooks`` with markers first, last and around the EMA hook."""
        from cosmos.engine.ema_hook import EMAHook

        out: List[HookBase] = [_Marker(self, "first")]
        for hook in hooks:
            if isinstance(hook, EMAHook):
                self.has_ema = True
                out += [_Marker(self, "ema_begin"), hook, _Marker(self, "ema_end")]
            else:
                out.append(hook)
        return out + [_Marker(self, "last")]

    def on(self, label: str, event: str, it: int) -> None:
        measure_end = self.warmup + self.steps
        if label == "first" and event == "before_step":
            if it == self.warmup:
                if self.loader is not None:
                    self.loader.waits.clear()
                self.step_marks.append(self.clock.mark())
            if it == measure_end:
                if self.loader is not None:
                    self.data_waits = list(self.loader.waits[: self.steps])
                self._attach()
            if it >= measure_end:
                self._record = {"begin": self.clock.mark(), "intervals": {}}
            return
        if label == "last" and event == "after_step":  # ``it`` = completed steps
            if self.warmup < it <= measure_end:
                self.step_marks.append(self.clock.mark())
            if it == measure_end and self.clock.cuda:
                self.peak_bytes = torch.cuda.max_memory_allocated()
            if self._record is not None:
                self._record["end"] = self.clock.mark()
                self.records.append(self._record)
                self._record = None
            return
        rec = self._record
        if rec is None:
            return
        point = {("first", "after_backward"): "bwd_end", ("last", "after_backward"): "ab_end",
                 ("first", "after_step"): "as_begin"}.get((label, event))
        if point is not None:
            rec[point] = self.clock.mark()
        elif label == "ema_begin":
            self._open[EMA] = self.clock.mark()
        elif label == "ema_end" and EMA in self._open:
            rec["intervals"].setdefault(EMA, []).append((self._open.pop(EMA), self.clock.mark()))

    # -- module hooks ---------------------------------------------------------------
    def _enter(self, region: str) -> None:
        if self._record is None:
            return
        self._depth[region] = self._depth.get(region, 0) + 1
        if self._depth[region] == 1:
            self._open[region] = self.clock.mark()

    def _leave(self, region: str) -> None:
        if self._record is None or self._depth.get(region, 0) == 0:
            return
        self._depth[region] -= 1
        if self._depth[region] == 0:
            self._record["intervals"].setdefault(region, []).append(
                (self._open.pop(region), self.clock.mark()))

    def _hook(self, module: nn.Module, region: str) -> None:
        self._handles.append(module.register_forward_pre_hook(lambda *_: self._enter(region)))
        self._handles.append(module.register_forward_hook(lambda *_: self._leave(region),
                                                          always_call=True))

    def _attach(self) -> None:
        self._hook(self.model, "forward")
        for name, child in self.model.named_children():
            role = _region_role(name)
            if role is None:
                continue
            for path, module in child.named_modules():
                if "_orig_mod" not in path.split("."):  # never inside a compiled region
                    self._hook(module, role)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- results --------------------------------------------------------------------
    def step_times(self) -> List[float]:
        """Milliseconds of each throughput step (after ``clock.sync()``)."""
        return [self.clock.ms(a, b) for a, b in zip(self.step_marks, self.step_marks[1:])]

    def phases(self) -> Optional[PhaseReport]:
        """Mean phase times over the complete instrumented steps (after ``clock.sync()``)."""
        done = [r for r in self.records if all(k in r for k in ("bwd_end", "ab_end", "as_begin"))
                and "forward" in r["intervals"]]
        if not done:
            return None
        ms = self.clock.ms
        names = [STUDENT, *([TEACHER] if TEACHER in self.roles else []),
                 *([LOSS] if LOSS in self.roles else []), BACKWARD, OPTIMIZER,
                 *([EMA] if self.has_ema else []), OTHER]
        sums = dict.fromkeys(names, 0.0)
        total = 0.0
        for r in done:
            span = {k: sum(ms(a, b) for a, b in v) for k, v in r["intervals"].items()}
            fwd_end = r["intervals"]["forward"][-1][1]
            step = ms(r["begin"], r["end"])
            part = {TEACHER: span.get(TEACHER, 0.0), LOSS: span.get(LOSS, 0.0),
                    BACKWARD: ms(fwd_end, r["bwd_end"]), OPTIMIZER: ms(r["ab_end"], r["as_begin"]),
                    EMA: span.get(EMA, 0.0)}
            part[STUDENT] = span["forward"] - part[TEACHER] - part[LOSS]
            named = sum(part[k] for k in names if k != OTHER)
            part[OTHER] = step - named
            for k in names:
                sums[k] += part[k]
            total += step
        n = len(done)
        return PhaseReport(n, total / n, {k: v / n for k, v in sums.items()})
