#!/usr/bin/env python
"""Training-curve PNGs of one or more run directories (from their metrics.jsonl).

    python tools/plot_curves.py RUN_DIR [RUN_DIR ...] [--out DIR] [--smoothing W]

Each run gets losses.png, temperatures.png, schedules.png, throughput.png and eval.png (those it
has data for) in ``<run>/plots/``, or in ``DIR`` with one run and ``DIR/<run name>/`` with
several. With several runs, ``compare_losses.png`` (every run's loss terms on one figure) goes to
``DIR``, or by default to the runs' common parent directory.

``--eval-metrics 'student/hard_negatives/*,…'`` adds ``compare_eval.png``: those evaluation
metrics against steps, one line per group of runs that differ only in their seed (a sweep's
``config=…,seed=N`` runs), mean ± std over the seeds as a band.
"""
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import run_cli  # noqa: E402
from cosmos.utils.cli import ArgumentParser, comma_list  # noqa: E402
from cosmos.utils.errors import CosmosError  # noqa: E402
from cosmos.visualization.curves import (  # noqa: E402
    compare_eval, compare_runs, plot_curves, resolve_run, seed_group)


def parse_args(argv: Optional[Sequence[str]] = None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directory (or its metrics.jsonl)")
    p.add_argument("--out", default="", metavar="DIR", help="where the plots go (see below)")
    p.add_argument("--smoothing", type=float, default=None,
                   help="EMA weight in [0, 1) of the loss / throughput lines (default: by length)")
    p.add_argument("--eval-metrics", type=comma_list, default=[], metavar="P,P,...",
                   help="also draw compare_eval.png: these evaluation metrics (fnmatch patterns "
                        "without 'eval/') against steps, runs that differ only in their seed "
                        "as one line, mean ± std")
    return p.parse_args(argv)


def run_labels(run_dirs: Sequence[str]) -> Dict[str, str]:
    """``{label: run dir}``: directory names, with as many parent names as makes them unique."""
    split = [os.path.abspath(r).rstrip(os.sep).split(os.sep) for r in run_dirs]
    depth = 1
    while depth < max(len(p) for p in split) and \
            len({"/".join(p[-depth:]) for p in split}) < len(split):
        depth += 1
    return {"/".join(p[-depth:]): r for p, r in zip(split, run_dirs)}


def main(args) -> List[str]:
    runs = [resolve_run(r)[0] for r in args.runs]
    if len(set(runs)) != len(runs):
        raise CosmosError("the same run directory is given twice")
    labels = run_labels(runs)
    written: List[str] = []
    if args.eval_metrics:
        groups: Dict[str, List[str]] = {}
        for label, run in labels.items():
            groups.setdefault(seed_group(label), []).append(run)
        out_dir = args.out or (os.path.commonpath(runs) if len(runs) > 1 else runs[0])
        written.append(compare_eval(groups, args.eval_metrics,
                                    os.path.join(out_dir, "compare_eval.png")))
    for label, run in labels.items():
        out = None
        if args.out:
            out = args.out if len(runs) == 1 else os.path.join(args.out, label.replace("/", "_"))
        written += plot_curves(run, out_dir=out, smoothing=args.smoothing)
    if len(runs) > 1:
        out_dir = args.out or os.path.commonpath(runs)
        written.append(compare_runs(labels, os.path.join(out_dir, "compare_losses.png"),
                                    smoothing=args.smoothing))
    print("\n".join(written))
    return written


if __name__ == "__main__":
    run_cli(main, parse_args())
