"""Scalar metrics of a training run: a storage the trainer and hooks write into, and writers
that send it to the console (progress line), ``metrics.jsonl`` and TensorBoard."""
from __future__ import annotations

import datetime
import json
import logging
import os
import statistics
from collections import defaultdict, deque
from typing import Callable, Deque, Dict, Optional, Tuple

logger = logging.getLogger(__name__)


class EventStorage:
    """Latest value and a short history of each named scalar, tagged with the step."""

    def __init__(self, window: int = 20) -> None:
        self.iter = 0
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._history: Dict[str, Deque[float]] = defaultdict(lambda: deque(maxlen=window))

    def put_scalar(self, name: str, value: float) -> None:
        value = float(value)
        self._latest[name] = (value, self.iter)
        self._history[name].append(value)

    def put_scalars(self, **values: float) -> None:
        for name, value in values.items():
            self.put_scalar(name, value)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        return dict(self._latest)

    def median(self, name: str) -> Optional[float]:
        history = self._history.get(name)
        return statistics.median(history) if history else None


class JSONWriter:
    """Appends ``{"iter": N, name: value, ...}`` lines: every value not written yet, on the line
    of the step it was recorded at (an evaluation after the last step gets its own line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._written: Dict[str, int] = {}  # name -> last step written

    def write(self, storage: EventStorage) -> None:
        rows: Dict[int, Dict[str, float]] = {}
        for name, (value, it) in storage.latest().items():
            if it > self._written.get(name, -1):
                rows.setdefault(it, {})[name] = value
                self._written[name] = it
        if not rows:
            return
        with open(self.path, "a") as f:
            for it in sorted(rows):
                f.write(json.dumps({"iter": it, **rows[it]}, sort_keys=True) + "\n")

    def close(self) -> None:
        pass


class TensorboardWriter:
    """Scalars to TensorBoard event files under ``log_dir``."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self._writer = None
        self._written: Dict[str, int] = {}

    def write(self, storage: EventStorage) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(self.log_dir)
        for name, (value, it) in storage.latest().items():
            if self._written.get(name, -1) < it:
                self._writer.add_scalar(name, value, it)
                self._written[name] = it
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class ProgressPrinter:
    """One console line per write: step, losses, lr, pairs/s, data time, ETA.

    ``eval_eta(step) -> (count, seconds or None)``: the evaluations the run will still do and
    their estimated duration; the ETA includes them (or says they are not timed yet).
    """

    def __init__(self, max_iter: int,
                 eval_eta: Optional[Callable[[int], Tuple[int, Optional[float]]]] = None) -> None:
        self.max_iter = max_iter
        self.eval_eta = eval_eta
        self._printed_iter = -1

    def write(self, storage: EventStorage) -> None:
        if storage.iter == self._printed_iter:
            return
        self._printed_iter = storage.iter
        latest = storage.latest()
        step_time = storage.median("time")
        parts = [f"step {storage.iter}/{self.max_iter} ({100.0 * storage.iter / self.max_iter:.0f}%)"]
        losses = [f"{k} {storage.median(k):.4f}" for k in sorted(latest) if k.endswith("loss")]
        parts.append(" ".join(losses))
        if "lr" in latest:
            parts.append(f"lr {latest['lr'][0]:.2e}")
        if "pairs_per_s" in latest:
            parts.append(f"{storage.median('pairs_per_s'):.1f} pairs/s")
        if "data_time" in latest:
            parts.append(f"data {storage.median('data_time'):.3f}s")
        bad = latest.get("data/bad_samples", (0.0, 0))[0]
        if bad:
            parts.append(f"skipped {int(bad)} bad samples ({100 * latest['data/bad_fraction'][0]:.2f}%)")
        if step_time:
            seconds = step_time * max(0, self.max_iter - storage.iter)
            count, eval_seconds = self.eval_eta(storage.iter) if self.eval_eta else (0, None)
            note = ""
            if count and eval_seconds is not None:
                seconds += eval_seconds
                note = f" (incl. {count} evaluation{'s' if count > 1 else ''})"
            elif count:
                note = f" + {count} evaluation{'s' if count > 1 else ''} (not timed yet)"
            parts.append(f"eta {datetime.timedelta(seconds=int(seconds))}{note}")
        logger.info(" | ".join(p for p in parts if p))

    def close(self) -> None:
        pass
