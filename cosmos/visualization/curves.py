"""Training curves of a run directory, from its ``metrics.jsonl`` (and ``eval/results_*.json``).

``plot_curves(run)`` writes into ``<run>/plots/``, one PNG per family, panels only for the
scalars the run logged:

* ``losses.png`` — every loss term (``loss``, ``clip_loss``, ``distill_loss`` …), one panel
  each: smoothed line over the faint raw values;
* ``temperatures.png`` — the logit scales (= 1/temperature) as logged: ``logit_scale`` and, for
  COSMOS, ``distill_logit_scale``;
* ``schedules.png`` — ``lr`` and ``ema_momentum``;
* ``throughput.png`` — ``pairs_per_s``;
* ``eval.png`` — ``eval/<encoder>/<evaluator>/<metric>`` vs step, one panel per evaluator group
  (the key without encoder and last name: ``segmentation``, ``segmentation/IoU``,
  ``synthetic/retrieval`` …), encoders as line styles.

``compare_runs({label: run_dir}, out_path)`` draws several runs' loss terms on one figure.
Every figure is a grid of at most :data:`MAX_COLS` panels per row, each
:data:`PANEL_INCHES` at :data:`DPI` (:func:`figure_size_px`), written atomically.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from cosmos.utils.atomic import atomic_write
from cosmos.utils.errors import CosmosError

logger = logging.getLogger(__name__)

Series = Tuple[List[int], List[float]]  # (steps ascending, values)

DPI = 100
PANEL_INCHES = (4.0, 3.0)
MAX_COLS = 3
METRICS_FILE = "metrics.jsonl"
SCHEDULE_KEYS = ("lr", "ema_momentum", "weight_decay")
THROUGHPUT_KEYS = ("pairs_per_s",)
_LINESTYLES = ("-", "--", ":", "-.")


# ---------------------------------------------------------------------------- reading
def read_metrics(path: str) -> Dict[str, Series]:
    """``metrics.jsonl`` → ``{key: (steps, values)}``, steps ascending, keys sorted.

    Lines that do not parse (a write cut short by a kill), are not objects or have no integer
    ``iter`` are skipped; so are non-numeric values. Rows of the same step merge (the later
    wins). A step lower than the previous row's marks a resume: the points logged at or after
    it before the restart are dropped, so every series is the history of the resumed run.
    """
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as exc:
        raise CosmosError(f"cannot read metrics file {path}: {exc.strerror or exc}") from exc
    points: Dict[str, Dict[int, float]] = {}
    last_iter, skipped = None, 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            it = row["iter"]
            if isinstance(it, bool) or int(it) != it:
                raise ValueError(it)
            it = int(it)
        except (ValueError, TypeError, KeyError):
            skipped += 1
            continue
        if last_iter is not None and it < last_iter:  # a resumed run re-logs these steps
            for series in points.values():
                for step in [s for s in series if s >= it]:
                    del series[step]
        last_iter = it
        for key, value in row.items():
            if key == "iter" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            points.setdefault(key, {})[it] = float(value)
    if skipped:
        logger.warning("%s: skipped %d unreadable line(s)", path, skipped)
    out: Dict[str, Series] = {}
    for key in sorted(points):
        steps = sorted(points[key])
        if steps:
            out[key] = (steps, [points[key][s] for s in steps])
    return out


def read_eval_results(run_dir: str) -> Dict[str, Series]:
    """``<run>/eval/results_NNNNNNN.json`` (the EvalHook's files) → ``{"eval/<key>": series}``."""
    points: Dict[str, Dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "eval", "results_*.json"))):
        match = re.search(r"results_(\d+)\.json$", path)
        try:
            with open(path) as f:
                results = json.load(f)
            step = int(results.get("iter", match.group(1)))
        except (OSError, ValueError, AttributeError, TypeError):
            logger.warning("skipped unreadable evaluation file %s", path)
            continue
        for key, value in results.items():
            if key != "iter" and isinstance(value, (int, float)) and not isinstance(value, bool):
                points.setdefault(f"eval/{key}", {})[step] = float(value)
    return {k: (sorted(v), [v[s] for s in sorted(v)]) for k, v in sorted(points.items())}


def resolve_run(run_dir_or_metrics_path: str) -> Tuple[str, str]:
    """A run directory or its ``metrics.jsonl`` → (run directory, metrics path)."""
    path = os.path.abspath(os.fspath(run_dir_or_metrics_path))
    if os.path.isdir(path):
        metrics = os.path.join(path, METRICS_FILE)
        if not os.path.isfile(metrics):
            raise CosmosError(f"no {METRICS_FILE} in {run_dir_or_metrics_path}; "
                              "is it a run directory?")
        return path, metrics
    if os.path.isfile(path):
        return os.path.dirname(path), path
    raise CosmosError(f"no such run directory or metrics file: {run_dir_or_metrics_path}")


def load_run(run_dir_or_metrics_path: str) -> Tuple[str, Dict[str, Series]]:
    """(run directory, series): ``metrics.jsonl`` plus the evaluations of ``eval/results_*.json``
    (which also hold the final evaluation, run after the last metrics write)."""
    run_dir, metrics = resolve_run(run_dir_or_metrics_path)
    series = read_metrics(metrics)
    for key, (steps, values) in read_eval_results(run_dir).items():
        merged = dict(zip(*series.get(key, ([], []))))
        merged.update(zip(steps, values))
        series[key] = (sorted(merged), [merged[s] for s in sorted(merged)])
    if not series:
        raise CosmosError(f"{metrics} has no metric rows")
    return run_dir, dict(sorted(series.items()))


# ----------------------------------------------------------------------------- grouping
def loss_keys(series: Mapping[str, Series]) -> List[str]:
    """Training loss terms (keys ending in ``loss``), the total ``loss`` first."""
    keys = sorted(k for k in series if k.endswith("loss") and not k.startswith("eval/"))
    return sorted(keys, key=lambda k: k != "loss")


def temperature_keys(series: Mapping[str, Series]) -> List[str]:
    """Logged logit scales (1/temperature): ``logit_scale``, ``distill_logit_scale`` …"""
    return sorted((k for k in series if k.endswith("logit_scale") and not k.startswith("eval/")),
                  key=lambda k: (k != "logit_scale", k))


def eval_groups(series: Mapping[str, Series]) -> Dict[str, List[Tuple[str, str, str]]]:
    """``{group: [(key, encoder, metric)]}`` for ``eval/<encoder>/<...group...>/<metric>`` keys.

    With a single evaluator the evaluator name is absent (``eval/<encoder>/<metric>``): the
    group is then ``metrics``. Constants of the evaluation data (``*_chance`` levels, the
    ``positives`` count) are left out: they are in the result tables.
    """
    groups: Dict[str, List[Tuple[str, str, str]]] = {}
    for key in sorted(series):
        if not key.startswith("eval/") or key.endswith("_chance") or key.endswith("/positives"):
            continue
        parts = key.split("/")[1:]
        encoder, rest = (parts[0], parts[1:]) if len(parts) > 1 else ("", parts)
        group = "/".join(rest[:-1]) or "metrics"
        groups.setdefault(group, []).append((key, encoder, rest[-1]))
    return groups


# ------------------------------------------------------------------------------ drawing
def smooth(values: Sequence[float], weight: float) -> List[float]:
    """TensorBoard's debiased exponential moving average; NaN/Inf points stay NaN (skipped)."""
    if not 0.0 <= weight < 1.0:
        raise CosmosError(f"smoothing must be in [0, 1), got {weight}")
    out, last, norm = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(float("nan"))
            continue
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


def _check_smoothing(smoothing: Optional[float]) -> None:
    if smoothing is not None and not 0.0 <= smoothing < 1.0:
        raise CosmosError(f"smoothing must be in [0, 1), got {smoothing}")


def auto_smoothing(num_points: int) -> float:
    """No smoothing for a handful of points, up to 0.95 (≈ 20-point window) for long runs."""
    return float(min(0.95, max(0.0, 1.0 - 10.0 / max(num_points, 1))))


def figure_size_px(num_panels: int) -> Tuple[int, int]:
    """(width, height) in pixels of a figure with ``num_panels`` panels."""
    cols = min(num_panels, MAX_COLS)
    rows = math.ceil(num_panels / MAX_COLS)
    return int(round(cols * PANEL_INCHES[0] * DPI)), int(round(rows * PANEL_INCHES[1] * DPI))


def _figure(num_panels: int, title: str):
    """A constrained-layout Agg figure and its ``num_panels`` axes (spare grid cells hidden)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols, rows = min(num_panels, MAX_COLS), math.ceil(num_panels / MAX_COLS)
    fig = Figure(figsize=(cols * PANEL_INCHES[0], rows * PANEL_INCHES[1]), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return fig, list(axes[:num_panels])


def save_figure(fig, path: str) -> str:
    """Write ``fig`` as a PNG at its own size and dpi, atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi))
    return path


def _draw(ax, steps: Sequence[int], values: Sequence[float], label: str, color: str,
          smoothing: Optional[float], linestyle: str = "-") -> None:
    """Raw values faint and the smoothed line over them; ``smoothing=0`` draws only the raw line."""
    weight = auto_smoothing(len(values)) if smoothing is None else smoothing
    marker = "o" if len(values) <= 12 else None
    if weight > 0:
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8, linestyle=linestyle)
        ax.plot(steps, smooth(values, weight), color=color, linewidth=1.5, label=label,
                linestyle=linestyle)
    else:
        ax.plot(steps, values, color=color, linewidth=1.5, label=label, marker=marker,
                markersize=3, linestyle=linestyle)


def _style(ax, title: str, ylabel: str = "", min_legend: int = 2) -> None:
    """Titles, integer step ticks, grid; a legend when the panel has several labelled lines
    (outside on the right when it has many)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    labels = ax.get_legend_handles_labels()[1]
    if len(labels) > 4:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    elif len(labels) >= min_legend:
        ax.legend(fontsize=6)


def _panels(path: str, title: str, panels: Sequence[Tuple[str, str, Callable]],
            min_legend: int = 2) -> str:
    """One figure of ``(panel title, ylabel, draw(ax))`` panels, saved at ``path``."""
    fig, axes = _figure(len(panels), title)
    for ax, (name, ylabel, draw) in zip(axes, panels):
        draw(ax)
        _style(ax, name, ylabel, min_legend)
    return save_figure(fig, path)


def plot_curves(run_dir_or_metrics_path: str, out_dir: Optional[str] = None,
                smoothing: Optional[float] = None) -> List[str]:
    """Write the run's curve PNGs (see module doc) into ``out_dir`` (default ``<run>/plots``).

    smoothing: EMA weight in [0, 1) of the smoothed loss / throughput lines; None picks it from
    the number of points. Returns the paths written; a family the run did not log is skipped.
    """
    _check_smoothing(smoothing)
    run_dir, series = load_run(run_dir_or_metrics_path)
    out_dir = out_dir or os.path.join(run_dir, "plots")
    name = os.path.basename(run_dir.rstrip(os.sep))
    written: List[str] = []

    def line(key: str, color: str, smooth_w: Optional[float]):
        return lambda ax: _draw(ax, *series[key], key, color, smooth_w)

    losses = loss_keys(series)
    if losses:
        written.append(_panels(os.path.join(out_dir, "losses.png"), f"{name}: training losses",
                               [(k, "loss", line(k, f"C{i}", smoothing))
                                for i, k in enumerate(losses)]))
    temps = temperature_keys(series)
    if temps:
        def draw_temps(ax):
            for i, k in enumerate(temps):
                _draw(ax, *series[k], k, f"C{i}", 0.0)
        written.append(_panels(os.path.join(out_dir, "temperatures.png"),
                               f"{name}: logit scales (1 / temperature)",
                               [("logit scales", "scale = 1/τ", draw_temps)]))
    schedules = [k for k in SCHEDULE_KEYS if k in series]
    if schedules:
        written.append(_panels(os.path.join(out_dir, "schedules.png"), f"{name}: schedules",
                               [(k, k, line(k, f"C{i}", 0.0)) for i, k in enumerate(schedules)]))
    throughput = [k for k in THROUGHPUT_KEYS if k in series]
    if throughput:
        written.append(_panels(os.path.join(out_dir, "throughput.png"), f"{name}: throughput",
                               [(k, "pairs / s", line(k, f"C{i}", smoothing))
                                for i, k in enumerate(throughput)]))
    groups = eval_groups(series)
    if groups:
        encoders = sorted({enc for members in groups.values() for _, enc, _ in members})
        styles = {enc: _LINESTYLES[i % len(_LINESTYLES)] for i, enc in enumerate(encoders)}

        def draw_group(members):
            def draw(ax):  # colour = metric (labelled once), line style = encoder
                metrics = sorted({m for _, _, m in members})
                labelled = set()
                for key, enc, metric in members:
                    label = metric if len(encoders) > 1 else f"{enc} {metric}".strip()
                    _draw(ax, *series[key], "_" if metric in labelled else label,
                          f"C{metrics.index(metric) % 10}", 0.0, styles[enc])
                    labelled.add(metric)
            return draw
        legend = ", ".join(f"{enc} {'—' if st == '-' else st}" for enc, st in styles.items())
        title = f"{name}: evaluation" + (f"  (line style: {legend})" if len(encoders) > 1 else "")
        written.append(_panels(os.path.join(out_dir, "eval.png"), title,
                               [(g, "", draw_group(m)) for g, m in groups.items()]))
    if not written:
        raise CosmosError(f"{run_dir}: nothing to plot (no loss, logit_scale, lr, ema_momentum, "
                          f"pairs_per_s or eval/ scalars in {METRICS_FILE})")
    return written


def compare_runs(runs: Mapping[str, str], out_path: str,
                 smoothing: Optional[float] = None) -> str:
    """Loss terms of several runs on one figure: ``{label: run dir or metrics.jsonl}`` → PNG.

    One panel per loss term (terms every run has first, e.g. ``clip_loss`` for COSMOS vs CLIP),
    one colour per run. Returns ``out_path``.
    """
    if not runs:
        raise CosmosError("compare_runs needs at least one run")
    _check_smoothing(smoothing)
    loaded: Dict[str, Dict[str, Series]] = {}
    for label, run in runs.items():
        run_dir, metrics = resolve_run(run)
        series = read_metrics(metrics)
        if not loss_keys(series):
            raise CosmosError(f"run {label!r} ({run_dir}) has no loss terms in {METRICS_FILE}")
        loaded[label] = series
    terms: List[str] = []
    for series in loaded.values():
        terms += [k for k in loss_keys(series) if k not in terms]
    shared = [t for t in terms if all(t in s for s in loaded.values())]
    terms = shared + [t for t in terms if t not in shared]

    def draw(term: str):
        def fn(ax):
            for i, (label, series) in enumerate(loaded.items()):
                if term in series:
                    _draw(ax, *series[term], label, f"C{i % 10}", smoothing)
        return fn
    return _panels(out_path, "training losses: " + " vs ".join(loaded),
                   [(t, "loss", draw(t)) for t in terms], min_legend=1)


def seed_group(label: str) -> str:
    """The run label without its seed: ``"config=clip,seed=2"`` → ``"config=clip"``.

    Sweep runs are named ``key=value`` pairs joined by commas (``tools/sweep.py``); the pair
    whose key is ``seed`` or ends in ``.seed`` is dropped. A label without one is its own group.
    """
    parts = [p for p in label.split(",")
             if p.split("=", 1)[0].rsplit(".", 1)[-1] != "seed" or "=" not in p]
    return ",".join(parts) or label


def mean_std_series(runs: Sequence[Series]) -> Tuple[List[int], List[float], List[float]]:
    """(steps every run has, mean, sample std (n − 1; 0 for one run)) of several series."""
    steps = sorted(set.intersection(*(set(s) for s, _ in runs))) if runs else []
    means, stds = [], []
    for step in steps:
        values = np.array([dict(zip(*run))[step] for run in runs], dtype=np.float64)
        means.append(float(values.mean()))
        stds.append(float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return steps, means, stds


def compare_eval(groups: Mapping[str, Sequence[str]], patterns: Sequence[str],
                 out_path: str) -> str:
    """Evaluation metrics against steps for groups of runs, mean ± std over each group's runs.

    ``groups``: ``{label: [run dir, …]}`` (e.g. the seeds of one config); ``patterns``: fnmatch
    patterns of the ``eval/…`` keys without the ``eval/`` prefix (``student/hard_negatives/*``).
    One panel per matching metric, one line per group with a shaded ±1 std band; only the
    steps that every run of a group evaluated are drawn. Returns ``out_path``.
    """
    import fnmatch

    if not groups:
        raise CosmosError("compare_eval needs at least one group of runs")
    loaded = {label: [load_run(run)[1] for run in runs] for label, runs in groups.items()}
    keys: List[str] = []
    for runs in loaded.values():
        for series in runs:
            keys += [k for k in series if k.startswith("eval/") and k not in keys
                     and any(fnmatch.fnmatchcase(k[5:], p) for p in patterns)
                     and not k.endswith("_chance")]
    if not keys:
        raise CosmosError(f"no evaluation metric matches {', '.join(patterns)} in the runs "
                          "(were they trained with train.eval_period > 0?)")

    def draw(key: str):
        def fn(ax):
            for i, (label, runs) in enumerate(loaded.items()):
                have = [s[key] for s in runs if key in s]
                if len(have) < len(runs):
                    continue
                steps, mean, std = mean_std_series(have)
                color = f"C{i % 10}"
                n = len(have)
                ax.plot(steps, mean, color=color, linewidth=1.5, marker="o", markersize=3,
                        label=f"{label} (n={n})" if n > 1 else label)
                if n > 1:
                    ax.fill_between(steps, np.subtract(mean, std), np.add(mean, std),
                                    color=color, alpha=0.2, linewidth=0)
        return fn
    return _panels(out_path, "evaluation, mean ± std over runs: " + " vs ".join(loaded),
                   [(k[5:], "", draw(k)) for k in sorted(keys)], min_legend=1)
