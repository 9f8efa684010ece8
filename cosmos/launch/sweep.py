"""Ablation sweeps: a grid of config overrides, one run directory per point, and one table.

    grid = parse_grid(["optimizer.lr=[1e-3,5e-4]", "model.distill_weight=[0.5,1]"])
    points = expand(grid)          # 4 dicts {key: value}
    collect(sweep_dir, runs)       # sweep.md, sweep.csv, sweep.png from each run's results

The grid key ``config`` (:data:`CONFIG_KEY`) varies the config file itself
(``config=[configs/clip/clip_tiny_synthetic.py,configs/cosmos/cosmos_tiny_synthetic.py]``).
A run that fails is recorded as ``failed: <its one-line error>`` and the sweep goes on; when
a ``*seed`` key varies, the runs that differ only in it are also summarised as mean ± std.
"""
from __future__ import annotations

import csv
import fnmatch
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from cosmos.utils.atomic import atomic_write_text
from cosmos.utils.errors import CosmosError

# Final metrics shown by default (fnmatch patterns over the keys of eval/results.json, plus the
# last training loss; "!PATTERN" leaves keys out): the headline numbers, not every per-class
# IoU nor the constant chance levels.
DEFAULT_METRICS = ("*R@1", "*top1", "*mIoU", "*hard_negatives/mean", "*object/mAP", "loss",
                   "!*_chance")
MANIFEST = "sweep.json"
CONFIG_KEY = "config"       # a grid axis over config files
MAX_ERROR_CHARS = 160


@dataclass
class SweepRun:
    """One point of the grid: its overrides, run directory and (after launching) its job."""

    name: str
    overrides: Dict[str, str]
    output_dir: str
    job_id: str = ""
    status: str = "pending"
    metrics: Dict[str, float] = field(default_factory=dict)
    error: str = ""

    def config_file(self, default: str) -> str:
        """The run's config: its ``config`` grid value, else the sweep's ``default``."""
        return self.overrides.get(CONFIG_KEY) or default

    def config_overrides(self) -> List[str]:
        """The run's grid values as ``key=value`` overrides (without ``config``)."""
        return [f"{k}={v}" for k, v in self.overrides.items() if k != CONFIG_KEY]

    def fail(self, reason: str) -> None:
        self.status, self.error = "failed", one_line(reason)

    def status_cell(self) -> str:
        """``failed: <one line>`` for a failed run with a known reason, else the status."""
        return f"failed: {self.error}" if self.status == "failed" and self.error else self.status


def one_line(text: str) -> str:
    """The last non-empty line of ``text`` without an ``error: `` prefix, at most
    :data:`MAX_ERROR_CHARS` characters."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    line = line[len("error: "):] if line.startswith("error: ") else line
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS - 1] + "…"


def _split_top_level(text: str) -> List[str]:
    """Split on commas that are not inside brackets, braces or quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def parse_grid(specs: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """``["key=[a,b]", "other=c"]`` → ``[("key", ["a", "b"]), ("other", ["c"])]``.

    A value list is ``[v1,v2,...]`` (nested brackets and quotes kept inside a value); a bare
    value is a one-point axis.
    """
    grid: List[Tuple[str, List[str]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key, values = key.strip(), values.strip()
        if not sep or not key or not values:
            raise CosmosError(f"--grid {spec!r}: expected KEY=[v1,v2,...]")
        if values.startswith("[") and values.endswith("]"):
            items = [v for v in _split_top_level(values[1:-1]) if v != ""]
        else:
            items = [values]
        if not items:
            raise CosmosError(f"--grid {spec!r}: the value list is empty")
        if key in dict(grid):
            raise CosmosError(f"--grid names {key!r} twice")
        grid.append((key, items))
    if not grid:
        raise CosmosError("a sweep needs at least one --grid KEY=[v1,v2,...]")
    return grid


def expand(grid: Sequence[Tuple[str, List[str]]]) -> List[Dict[str, str]]:
    """Every combination of the grid's values, the first axis varying slowest."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def run_name(point: Dict[str, str]) -> str:
    """A directory name for a grid point: ``lr=0.001,distill_weight=0.5`` (last key parts)."""
    short = {}
    for key, value in point.items():
        parts = key.split(".")
        label = parts[-1]
        if label.startswith("_") and len(parts) > 1:  # e.g. model.distill_loss._target_
            label = parts[-2]
        short[label if label not in short else key] = value
        if key == CONFIG_KEY:  # configs/clip/clip_tiny_synthetic.py → clip_tiny_synthetic
            short[key] = os.path.splitext(os.path.basename(value))[0]
    name = ",".join(f"{k}={v}" for k, v in short.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)[:200]


def plan(points: Sequence[Dict[str, str]], sweep_dir: str) -> List[SweepRun]:
    runs = [SweepRun(run_name(p), dict(p), os.path.join(sweep_dir, run_name(p))) for p in points]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise CosmosError("two grid points map to the same run name; use distinct values")
    return runs


def check_runs(runs: Sequence[SweepRun], default_config: str, fixed: Sequence[str],
               load: Callable[[str, List[str]], object]) -> List[SweepRun]:
    """Load every run's config with its overrides (``load(config_file, overrides)``) before any
    run starts. A run whose config does not load is marked failed with the one-line reason
    and left out; when none loads, the first error is raised (a typo in a shared override or
    in a grid key stops the sweep with one line, before anything is written). Returns the
    runs to launch."""
    runnable: List[SweepRun] = []
    first: Optional[CosmosError] = None
    for run in runs:
        config = run.config_file(default_config)
        if not config:
            raise CosmosError(f"no config file for run {run.name}: give --config-file or a "
                              f"{CONFIG_KEY}=[...] grid axis")
        try:
            load(config, [*fixed, *run.config_overrides()])
        except CosmosError as exc:
            run.fail(str(exc))
            first = first or exc
            continue
        runnable.append(run)
    if not runnable and first is not None:
        raise first
    return runnable


def train_command(run: SweepRun, default_config: str, fixed: Sequence[str],
                  train_script: str) -> List[str]:
    """``train_script --config-file CFG fixed... grid... train.output_dir=RUN`` (argv)."""
    return [train_script, "--config-file", os.path.abspath(run.config_file(default_config)),
            *fixed, *run.config_overrides(), f"train.output_dir={run.output_dir}"]


def run_local(runs: Sequence[SweepRun], default_config: str, fixed: Sequence[str],
              train_script: str, on_update: Optional[Callable[[], None]] = None) -> None:
    """Train the runs not yet failed one after another, each in a fresh interpreter.

    A run that exits non-zero is recorded as failed with the last line of its stderr (the
    one-line error of a bad input, or the last line of a traceback) and the next run starts.
    ``on_update()`` is called after each run (to save the manifest).
    """
    todo = [r for r in runs if r.status != "failed"]
    for i, run in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {run.name}", flush=True)
        start = time.time()
        res = subprocess.run([sys.executable, *train_command(run, default_config, fixed,
                                                             train_script)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if res.returncode == 0:
            run.status, run.error = "done", ""
        else:
            code = res.returncode
            run.fail(one_line(res.stderr or "") or (f"killed by signal {-code}" if code < 0
                                                    else f"exit code {code}"))
        print(f"      {run.status_cell()} in {time.time() - start:.0f} s", flush=True)
        if on_update is not None:
            on_update()


def save_manifest(sweep_dir: str, base_config: str, fixed: Sequence[str],
                  runs: Sequence[SweepRun]) -> None:
    data = {"config_file": base_config, "overrides": list(fixed), "runs": [asdict(r) for r in runs]}
    atomic_write_text(os.path.join(sweep_dir, MANIFEST), json.dumps(data, indent=2))


def load_manifest(sweep_dir: str) -> Tuple[dict, List[SweepRun]]:
    path = os.path.join(sweep_dir, MANIFEST)
    if not os.path.isfile(path):
        raise CosmosError(f"no sweep in {sweep_dir}: {MANIFEST} is missing")
    with open(path) as f:
        data = json.load(f)
    return data, [SweepRun(**r) for r in data["runs"]]


def final_metrics(output_dir: str) -> Tuple[str, Dict[str, float]]:
    """(status, metrics) of a run directory: the final evaluation plus the last training loss."""
    metrics: Dict[str, float] = {}
    status = "missing"
    log = os.path.join(output_dir, "metrics.jsonl")
    if os.path.isfile(log):
        status = "running"
        with open(log) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if "loss" in row:
                    metrics["loss"] = float(row["loss"])
    results = os.path.join(output_dir, "eval", "results.json")
    if os.path.isfile(results):
        with open(results) as f:
            data = json.load(f)
        metrics.update({k: float(v) for k, v in data.items() if k != "iter"})
        status = "done"
    elif os.path.isfile(os.path.join(output_dir, "student.pth")):
        status = "done"
    return status, metrics


def select(metrics: Dict[str, float], patterns: Sequence[str]) -> List[str]:
    """Metric names matching any pattern, in pattern order, then sorted; a pattern ``!P``
    leaves out every name matching ``P``."""
    skip = [p[1:] for p in patterns if p.startswith("!")]
    chosen: List[str] = []
    for pattern in (p for p in patterns if not p.startswith("!")):
        chosen += sorted(k for k in metrics if fnmatch.fnmatch(k, pattern) and k not in chosen
                         and not any(fnmatch.fnmatch(k, s) for s in skip))
    return chosen


def collect(sweep_dir: str, runs: Sequence[SweepRun],
            patterns: Sequence[str] = DEFAULT_METRICS) -> Tuple[str, List[str]]:
    """Read each run's final metrics; write ``sweep.md``, ``sweep.csv`` and ``sweep.png``.

    Returns the markdown table and the metric columns.
    """
    for run in runs:
        status, run.metrics = final_metrics(run.output_dir)
        if run.status != "failed" or status == "done":
            run.status = status
            run.error = "" if status == "done" else run.error
    keys = list(dict.fromkeys(k for run in runs for k in run.overrides))
    columns: List[str] = []
    for run in runs:
        columns += [c for c in select(run.metrics, patterns) if c not in columns]
    header = ["run", *keys, "status", *columns]
    rows = [[run.name, *(run.overrides.get(k, "") for k in keys), run.status_cell(),
             *(f"{run.metrics[c]:.4g}" if c in run.metrics else "" for c in columns)]
            for run in runs]
    table = _markdown(header, rows)
    text = table
    seeds = seed_keys(runs)
    if seeds:
        mean_header, mean_rows, numbers = aggregate(runs, columns, seeds)
        text += (f"\n\n## Mean ± std over {', '.join(seeds)} (sample std, n - 1; "
                 f"done runs only)\n\n" + _markdown(mean_header, mean_rows))
        _write_csv(os.path.join(sweep_dir, "sweep_mean.csv"), *numbers)
        if columns and any(run.metrics for run in runs):
            plot_mean(os.path.join(sweep_dir, "sweep_mean.png"), *numbers, columns)
    atomic_write_text(os.path.join(sweep_dir, "sweep.md"),
                      f"# Sweep {os.path.basename(sweep_dir)}\n\n{text}\n")
    _write_csv(os.path.join(sweep_dir, "sweep.csv"), header, rows)
    if columns and any(run.metrics for run in runs):
        plot(os.path.join(sweep_dir, "sweep.png"), runs, columns)
    return text, columns


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(value: str) -> str:
        return str(value).replace("|", "\\|")
    return "\n".join(["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(map(cell, r)) + " |" for r in rows)])


def _write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def seed_keys(runs: Sequence[SweepRun]) -> List[str]:
    """Grid keys named ``seed`` or ``*.seed`` (e.g. ``train.seed``) with more than one value."""
    keys = dict.fromkeys(k for run in runs for k in run.overrides
                         if k.rsplit(".", 1)[-1].endswith("seed"))
    return [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """(mean, sample standard deviation with n - 1; NaN for fewer than two values)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def aggregate(runs: Sequence[SweepRun], columns: Sequence[str], seeds: Sequence[str]):
    """Group the runs that differ only in the ``seeds`` keys; per group and metric the mean ±
    sample std over its done runs. Returns (markdown header, markdown rows, (csv header, csv
    rows)); the csv has ``<metric> mean`` and ``<metric> std`` columns."""
    keys = [k for k in dict.fromkeys(k for run in runs for k in run.overrides) if k not in seeds]
    groups: Dict[Tuple[str, ...], List[SweepRun]] = {}
    for run in runs:
        groups.setdefault(tuple(run.overrides.get(k, "") for k in keys), []).append(run)
    header = [*keys, "done", *columns]
    csv_header = [*keys, "done", "runs", *(f"{c} {s}" for c in columns for s in ("mean", "std"))]
    rows, csv_rows = [], []
    for values, members in groups.items():
        done = [r for r in members if r.status == "done"]
        cells, numbers = [], []
        for column in columns:
            mean, std = mean_std([r.metrics[column] for r in done if column in r.metrics])
            numbers += ["" if math.isnan(mean) else f"{mean:.6g}",
                        "" if math.isnan(std) else f"{std:.6g}"]
            cells.append("" if math.isnan(mean) else f"{mean:.4g}" if math.isnan(std)
                         else f"{mean:.4g} ± {std:.2g}")
        rows.append([*values, f"{len(done)}/{len(members)}", *cells])
        csv_rows.append([*values, len(done), len(members), *numbers])
    return header, rows, (csv_header, csv_rows)


def plot(path: str, runs: Sequence[SweepRun], columns: Sequence[str], max_panels: int = 8) -> None:
    """One bar panel per metric (up to ``max_panels``), one bar per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(columns)[:max_panels]
    cols = min(4, len(columns))
    rows = (len(columns) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.4 * len(runs) / 4),
                             squeeze=False)
    names = [r.name for r in runs]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, column in zip(axes.flat, columns):
        values = [r.metrics.get(column, float("nan")) for r in runs]
        bars = ax.bar(range(len(runs)), values,
                      color=[colours[i % len(colours)] for i in range(len(runs))])
        ax.bar_label(bars, fmt="%.3g", fontsize=6)
        ax.set_title(column, fontsize=8)
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels([str(i + 1) for i in range(len(runs))], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    legend = "\n".join(f"{i + 1}: {n}" for i, n in enumerate(names))
    fig.text(0.01, 0.0, legend, fontsize=7, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * len(runs), 1, 1))
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _group_label(values: Sequence[str]) -> str:
    """A group's axis values, config files shortened to their names."""
    return ", ".join(os.path.splitext(os.path.basename(v))[0] if v.endswith(".py") else v
                     for v in values) or "all"


def plot_mean(path: str, csv_header: Sequence[str], csv_rows: Sequence[Sequence],
              columns: Sequence[str], max_panels: int = 16) -> None:
    """One horizontal-bar panel per metric (up to ``max_panels``), one bar per group of runs
    that differ only in their seed: the mean, with the sample std as an error bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_keys = csv_header.index("done")
    labels = [_group_label([str(v) for v in row[:num_keys]]) for row in csv_rows]
    columns = list(columns)[:max_panels]
    cols = min(4, len(columns))
    rows = (len(columns) + cols - 1) // cols
    height = 0.6 + 0.22 * len(labels)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height * rows + 0.3), squeeze=False,
                             sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, column in zip(axes.flat, columns):
        mean_at, std_at = csv_header.index(f"{column} mean"), csv_header.index(f"{column} std")
        means = [float(r[mean_at]) if r[mean_at] != "" else float("nan") for r in csv_rows]
        stds = [float(r[std_at]) if r[std_at] != "" else 0.0 for r in csv_rows]
        ax.barh(range(len(labels)), means, xerr=stds, capsize=2,
                color=[colours[i % len(colours)] for i in range(len(labels))])
        for y, (m, sd) in enumerate(zip(means, stds)):
            if not math.isnan(m):
                ax.text(m + sd, y, f" {m:.3g}±{sd:.2g}", va="center", fontsize=6)
        ax.set_title(column, fontsize=8)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.25)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.suptitle("mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def failed_runs(runs: Sequence[SweepRun]) -> List[SweepRun]:
    return [r for r in runs if r.status in ("failed", "missing")]


def summary_line(runs: Sequence[SweepRun], sweep_dir: Optional[str] = None) -> str:
    done = sum(r.status == "done" for r in runs)
    where = f" in {sweep_dir}" if sweep_dir else ""
    return f"{done}/{len(runs)} runs done{where}: sweep.md, sweep.csv, sweep.png"
