"""Scalar metrics of a training run: a storage the trainer and hooks write into, and writers
that send it to the console (progress line), ``metrics.jsonl``, TensorBoard and Weights & Biases
(``train.report_to``)."""
from __future__ import annotations

import datetime
import json
import logging
import os
import statistics
import uuid
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
        percent = 100.0 * storage.iter / self.max_iter
        parts = [f"step {storage.iter}/{self.max_iter} ({percent:.0f}%)"]
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
            bad_percent = 100 * latest["data/bad_fraction"][0]
            parts.append(f"skipped {int(bad)} bad samples ({bad_percent:.2f}%)")
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


class WandbWriter:
    """Scalars (and, once, the run config) to Weights & Biases.

    The W&B run id is kept in ``<output_dir>/wandb_run_id`` so that a resumed training continues
    the same W&B run. ``options``: ``project``, ``entity``, ``name``, ``group``, ``tags``,
    ``mode`` (``online`` / ``offline`` / ``disabled``; default: W&B's, e.g. ``WANDB_MODE``).
    """

    def __init__(self, output_dir: str, options: Optional[Dict] = None,
                 config: Optional[Dict] = None) -> None:
        wandb = import_wandb()
        options = dict(options or {})
        id_file = os.path.join(output_dir, "wandb_run_id")
        if os.path.isfile(id_file):
            with open(id_file) as f:
                run_id = f.read().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            with open(id_file, "w") as f:
                f.write(run_id + "\n")
        kwargs = {k: options[k] for k in ("project", "entity", "name", "group", "tags", "mode")
                  if options.get(k) not in (None, "", [])}
        kwargs.setdefault("project", "cosmos")
        kwargs.setdefault("name", os.path.basename(os.path.abspath(output_dir)))
        self._run = wandb.init(id=run_id, resume="allow", config=config or {},
                               dir=os.environ.get("WANDB_DIR", output_dir), **kwargs)
        self._written: Dict[str, int] = {}

    def write(self, storage: EventStorage) -> None:
        rows: Dict[int, Dict[str, float]] = {}
        for name, (value, it) in storage.latest().items():
            if self._written.get(name, -1) < it:
                rows.setdefault(it, {})[name] = value
                self._written[name] = it
        for it in sorted(rows):
            self._run.log(rows[it], step=it)

    def close(self) -> None:
        self._run.finish()


REPORT_TO = ("tensorboard", "wandb")


def import_wandb():
    """The ``wandb`` module, or a one-line error naming the extra that installs it."""
    try:
        import wandb
    except ImportError:
        from cosmos.utils.errors import CosmosError
        raise CosmosError("train.report_to asks for wandb but the wandb package is not "
                          "installed: pip install 'cosmos-ssl[wandb]' (or pip install wandb)"
                          ) from None
    return wandb


def report_to(value) -> list:
    """``train.report_to`` as a checked list (a list, or a comma-separated string)."""
    from cosmos.utils.errors import ConfigError

    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value or [])
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise ConfigError(f"train.report_to has unknown {unknown}; known: {', '.join(REPORT_TO)} "
                          "(metrics.jsonl is always written)")
    return names


def report_writers(train_cfg, output_dir: str, run_config: Optional[Dict] = None) -> list:
    """The writers ``train.report_to`` asks for (default: TensorBoard), ``train.wandb`` options."""
    names = report_to(train_cfg.get("report_to", ["tensorboard"]))
    writers = []
    if "tensorboard" in names:
        writers.append(TensorboardWriter(os.path.join(output_dir, "tensorboard")))
    if "wandb" in names:
        writers.append(WandbWriter(output_dir, train_cfg.get("wandb"), run_config))
    return writers
