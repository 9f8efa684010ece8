#!/usr/bin/env python
"""The main job of `make demo`: COSMOS and its CLIP baseline, equal steps, on the synthetic shards.

Trains ``configs/cosmos/cosmos_tiny_synthetic.py`` then ``configs/clip/clip_tiny_synthetic.py``
through ``tools/train_net.py`` (the same entry point and run directories a user gets), each with
the same ``--steps`` and ``--batch-size``, then writes ``comparison.md`` (a table of the held-out
zero-shot results) and ``comparison.png`` (training loss curves and the table as bars) into
``--out``, and ends with ``report.md`` there: the table, every run's curves, cross-attention maps
of held-out scenes and segmentation overlays (``cosmos.visualization.report``). Running it again
continues unfinished runs and re-evaluates finished ones.

    python tools/demo.py --out runs/demo [--steps 200] [--batch-size 32] [override ...]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cosmos.utils.cli import ArgumentParser, add_out_argument  # noqa: E402
RUNS = (("cosmos", "configs/cosmos/cosmos_tiny_synthetic.py"),
        ("clip", "configs/clip/clip_tiny_synthetic.py"))
# (row label, results.json key) for the comparison table, per encoder.
METRICS = (("full caption i2t R@1", "synthetic/retrieval/i2t_R@1"),
           ("full caption t2i R@1", "synthetic/retrieval/t2i_R@1"),
           ("small-object sentence t2i R@10", "synthetic/small_object/t2i_R@10"),
           ("shape classification top-1", "synthetic/classification/top1"),
           ("segmentation mIoU", "segmentation/mIoU"))
DEFAULT_SHARDS = "datasets/synthetic_scenes/train-{000000..000009}.tar"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n")[0])
    add_out_argument(p, "directory of the two runs and the comparison", default="runs/demo")
    p.add_argument("--steps", type=int, default=200, help="training steps of each run")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step of each run")
    p.add_argument("overrides", nargs="*", help="config overrides applied to both runs")
    return p.parse_args(argv)


def train(name: str, config: str, args: argparse.Namespace) -> str:
    out = os.path.join(args.out, name)
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file",
           os.path.join(REPO, config), f"train.output_dir={out}", f"train.max_iter={args.steps}",
           f"dataloader.train.batch_size={args.batch_size}", *args.overrides]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    code = subprocess.call(cmd)
    if code != 0:
        sys.exit(f"error: the {name} run failed (exit {code}); its log is {out}/log.txt")
    return out


def read_results(run_dir: str) -> Dict[str, float]:
    with open(os.path.join(run_dir, "eval", "results.json")) as f:
        return json.load(f)


def read_losses(run_dir: str) -> Tuple[List[int], List[float]]:
    steps, losses = [], []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "clip_loss" in row:
                steps.append(row["iter"])
                losses.append(row["clip_loss"])
    return steps, losses


def columns(results: Dict[str, Dict[str, float]]) -> List[Tuple[str, Dict[str, float]]]:
    """(column label, {metric key: value}) for CLIP, the COSMOS student and teacher."""
    cols = [("CLIP", results["clip"], "student"), ("COSMOS student", results["cosmos"], "student"),
            ("COSMOS teacher", results["cosmos"], "teacher")]
    return [(label, {key: res.get(f"{enc}/{key}", float("nan")) for _, key in METRICS})
            for label, res, enc in cols]


def write_table(cols, path: str, steps: int, batch_size: int) -> str:
    lines = [f"Held-out synthetic scenes (500), percent, after {steps} steps of batch {batch_size}.",
             "", "| metric | " + " | ".join(label for label, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, key in METRICS:
        lines.append(f"| {label} | " + " | ".join(f"{c[key]:.1f}" for _, c in cols) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def plot(cols, curves: Dict[str, Tuple[List[int], List[float]]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, (steps, losses) in curves.items():
        left.plot(steps, losses, label=f"{name} clip_loss")
    left.set_xlabel("step")
    left.set_ylabel("CLIP InfoNCE (train)")
    left.legend()
    left.set_title("training loss")
    width = 0.8 / len(cols)
    for i, (label, values) in enumerate(cols):
        xs = [j + i * width for j in range(len(METRICS))]
        right.bar(xs, [values[key] for _, key in METRICS], width=width, label=label)
    right.set_xticks([j + width * (len(cols) - 1) / 2 for j in range(len(METRICS))])
    right.set_xticklabels([label.replace(" ", "\n", 2) for label, _ in METRICS], fontsize=8)
    right.set_ylabel("percent")
    right.set_title("held-out zero-shot results")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    shard_override = [o for o in args.overrides if o.startswith("dataloader.train.urls=")]
    if not shard_override and not glob.glob(os.path.join(REPO, "datasets", "synthetic_scenes",
                                                         "train-*.tar")):
        sys.exit(f"error: no synthetic shards at {DEFAULT_SHARDS}; write them with `make shards`")
    os.makedirs(args.out, exist_ok=True)
    dirs = {name: train(name, config, args) for name, config in RUNS}
    results = {name: read_results(d) for name, d in dirs.items()}
    cols = columns(results)
    table = write_table(cols, os.path.join(args.out, "comparison.md"), args.steps, args.batch_size)
    plot(cols, {name: read_losses(d) for name, d in dirs.items()},
         os.path.join(args.out, "comparison.png"))
    from cosmos.visualization.report import write_report
    report = write_report(args.out, dirs, title="make demo: COSMOS and CLIP on the synthetic scenes",
                          intro=[table, "![comparison](comparison.png)"])
    print("\n" + table)
    print(f"written {args.out}/comparison.md, {args.out}/comparison.png and the run report {report}")


if __name__ == "__main__":
    main(sys.argv[1:])
