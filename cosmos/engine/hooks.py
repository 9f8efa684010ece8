"""Training hooks: schedules, logit-scale clamp, metric writers, checkpoints, evaluation,
NaN guard. Every hook derives from :class:`cosmos.engine.hook_base.HookBase`."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from cosmos.utils.atomic import atomic_write_text
from cosmos.engine.hook_base import HookBase
from cosmos.utils.errors import NonFiniteLossError

logger = logging.getLogger(__name__)


class ParamSchedule(HookBase):
    """Sets lr (and optionally weight decay) of every param group before each step.

    lr = ``base_lr × lr_multiplier(step) × group["lr_scale"]``;
    wd = ``group["initial_weight_decay"] × wd_multiplier(step)`` — pure functions of the step.
    """

    def __init__(self, lr_multiplier: Callable[[int], float],
                 wd_multiplier: Optional[Callable[[int], float]] = None) -> None:
        self.lr_multiplier, self.wd_multiplier = lr_multiplier, wd_multiplier

    def before_train(self) -> None:
        for group in self.trainer.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group.setdefault("initial_weight_decay", group.get("weight_decay", 0.0))

    def before_step(self) -> None:
        step = self.trainer.iter
        lr_mult = self.lr_multiplier(step)
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_mult * group.get("lr_scale", 1.0)
            if self.wd_multiplier is not None:
                group["weight_decay"] = group["initial_weight_decay"] * self.wd_multiplier(step)


class LogitScaleClamp(HookBase):
    """After each step, clamps every parameter named ``*logit_scale`` to [0, ln max_scale]."""

    def __init__(self, max_scale: float = 100.0) -> None:
        self.max_log = math.log(max_scale)

    def after_step(self) -> None:
        with torch.no_grad():
            for name, param in self.trainer.model.named_parameters():
                if name.endswith("logit_scale"):
                    param.clamp_(0.0, self.max_log)


class NaNGuard(HookBase):
    """Stops training when a loss term is NaN or Inf, without a host synchronisation per step.

    Every step records on the device the first step whose loss terms were not all finite (and
    those terms); the record is read at the trainer's sync steps (``trainer.sync_step``: log,
    checkpoint and evaluation steps, the last step, a stop), before that step's optimizer step,
    so no checkpoint or evaluation sees non-finite weights. Steps between the bad one and the
    check have updated the weights with non-finite gradients: resume from the last checkpoint.
    """

    def before_train(self) -> None:
        self._first: Optional[torch.Tensor] = None   # step of the first non-finite terms, or -1
        self._terms: Optional[torch.Tensor] = None   # the terms of that step

    def after_backward(self) -> None:
        loss_dict = self.trainer.loss_dict
        names = list(loss_dict)
        terms = torch.stack([v.detach().float().reshape(()) for v in loss_dict.values()])
        if self._first is None:
            self._first = torch.full((), -1, dtype=torch.long, device=terms.device)
            self._terms = terms.clone()
        new = ~torch.isfinite(terms).all() & (self._first < 0)
        step = self.trainer.iter + 1
        self._first = torch.where(new, torch.full_like(self._first, step), self._first)
        self._terms = torch.where(new, terms, self._terms)
        if not self.trainer.sync_step:
            return
        first = int(self._first)
        if first < 0:
            return
        values = self._terms.tolist()
        name = next((n for n, v in zip(names, values) if not math.isfinite(v)), names[0])
        value = values[names.index(name)]
        found = "" if first == step else (
            f" (found at step {step}: weights since step {first} are not finite; "
            "resume from the last checkpoint)")
        raise NonFiniteLossError(
            f"step {first}: loss term '{name}' is {value}; stopping before the optimizer step "
            f"of step {step}{found}", weights_finite=first == step)


class PeriodicWriter(HookBase):
    """Flushes the metric storage to the writers every ``period`` steps and at the end."""

    def __init__(self, writers: Sequence[Any], period: int = 20) -> None:
        self.writers, self.period = list(writers), max(1, int(period))

    def after_step(self) -> None:
        it = self.trainer.iter
        if it % self.period == 0 or it == self.trainer.max_iter:
            for writer in self.writers:
                writer.write(self.trainer.storage)

    def after_train(self) -> None:
        # a step that began but did not finish (NaN stop, error) recorded nothing: label what
        # is written (the last finished step's figures, a final evaluation) with its own step
        self.trainer.storage.iter = self.trainer.iter
        for writer in self.writers:
            writer.write(self.trainer.storage)
            writer.close()


class PeriodicCheckpointer(HookBase):
    """Saves the trainer state every ``period`` steps, after the last step, and after the step at
    which a stop was requested (preemption). Every rank calls ``trainer.state_dict()`` (the data
    position is gathered from all ranks); only an enabled checkpointer (rank 0) writes."""

    def __init__(self, checkpointer, period: int) -> None:
        self.checkpointer, self.period = checkpointer, int(period)

    def after_step(self) -> None:
        it = self.trainer.iter
        periodic = self.period > 0 and it % self.period == 0
        if periodic or it == self.trainer.max_iter or self.trainer.stop_signal is not None:
            self.checkpointer.save(it, self.trainer.state_dict())


class EvalHook(HookBase):
    """Runs ``evaluate() -> {name: value}`` every ``period`` steps and after training.

    Results go to the metric storage (``eval/<name>``) and to ``eval_dir/results_NNNNNNN.json``.
    The duration of the last evaluation lets the progress line's ETA include the evaluations
    still to come (:meth:`remaining`).
    """

    def __init__(self, period: int, evaluate: Callable[[], Dict[str, float]],
                 eval_dir: Optional[str] = None) -> None:
        self.period, self.evaluate, self.eval_dir = int(period), evaluate, eval_dir
        self.last_results: Dict[str, float] = {}
        self._last_iter = -1
        self.seconds: Optional[float] = None  # duration of the last evaluation

    def remaining(self, step: int) -> Tuple[int, Optional[float]]:
        """``(evaluations after step, their estimated seconds or None if none was timed)``."""
        max_iter = self.trainer.max_iter
        periodic = 0
        if self.period > 0:
            periodic = max(0, (max_iter - 1) // self.period - step // self.period)
        count = periodic + (1 if step < max_iter or self._last_iter != max_iter else 0)
        return count, None if self.seconds is None else count * self.seconds

    def _run(self) -> None:
        it = self.trainer.iter
        if it == self._last_iter:
            return
        start = time.perf_counter()
        results = self.evaluate()
        self.seconds = time.perf_counter() - start
        self._last_iter, self.last_results = it, results
        self.trainer.storage.put_scalars(**{f"eval/{k}": v for k, v in results.items()})
        if self.eval_dir:
            os.makedirs(self.eval_dir, exist_ok=True)
            atomic_write_text(os.path.join(self.eval_dir, f"results_{it:07d}.json"),
                              json.dumps({"iter": it, **results}, indent=2, sort_keys=True))

    def after_step(self) -> None:
        it = self.trainer.iter
        if self.period > 0 and it % self.period == 0 and it != self.trainer.max_iter:
            self._run()

    def after_train(self) -> None:
        if self.trainer.iter == self.trainer.max_iter:
            self._run()

    def state_dict(self) -> Dict[str, Any]:
        return {"iter": self._last_iter, "results": dict(self.last_results)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._last_iter = int(state.get("iter", -1))
        self.last_results = dict(state.get("results", {}))
