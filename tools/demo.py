#!/usr/bin/env python
"""The main job of `make demo`: COSMOS and its CLIP baseline, equal steps, on the synthetic shards.

Trains ``configs/cosmos/cosmos_tiny_synthetic.py`` then ``configs/clip/clip_tiny_synthetic.py``
through ``tools/train_net.py`` (the same entry point and run directories a user gets), each with
the same ``--steps`` and ``--batch-size``, then writes ``comparison.md`` (a table of the held-out
zero-shot results, the fine-grained metrics first, with chance levels) and ``comparison.png``
(training loss curves and the table as bars) into ``--out``, and ends with ``report.md`` there:
the table, every run's curves, cross-attention maps of held-out scenes and segmentation
overlays (``cosmos.visualization.report``). Running it again continues unfinished runs and
re-evaluates finished ones.

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
# (row label, results.json key after the encoder) for the comparison table: the fine-grained
# metrics first (docs/evaluation.md; their chance levels come with the results), then the
# whole-caption and object-level ones of the first demo.
METRICS = (("hard negative: small-object colour", "hard_negatives/small_color"),
           ("hard negative: small-object shape", "hard_negatives/small_shape"),
           ("hard negative: small-object position", "hard_negatives/small_position"),
           ("hard negative: dominant-object colour", "hard_negatives/dominant_color"),
           ("hard negative: dominant-object shape", "hard_negatives/dominant_shape"),
           ("hard negative: background colour", "hard_negatives/background"),
           ("small-object retrieval mAP (shape, colour, position)", "object_retrieval/object/mAP"),
           ("small-object retrieval R@10 (shape, colour, position)",
            "object_retrieval/object/R@10"),
           ("small-object retrieval mAP (shape, colour)", "object_retrieval/shape_color/mAP"),
           ("segmentation IoU: small objects", "segmentation/small/mIoU"),
           ("segmentation IoU: dominant object", "segmentation/dominant/mIoU"),
           ("segmentation IoU: background", "segmentation/background/IoU"),
           ("full caption i2t R@1", "synthetic/retrieval/i2t_R@1"),
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


def num_scenes(run_dir: str) -> int:
    """Held-out scenes of the run's synthetic evaluation (0 when its config does not say)."""
    from omegaconf import OmegaConf
    try:
        return int(OmegaConf.load(os.path.join(run_dir, "config.yaml"))
                   .evaluation.synthetic.dataset.num_samples)
    except Exception:  # an older or hand-made run directory: no chance column for these rows
        return 0


def chance_levels(results: Dict[str, float], scenes: int) -> Dict[str, float]:
    """{metric key: chance in percent}: the fine-grained evaluators report theirs; for the
    others, one correct item among ``scenes`` (R@k = k / scenes) and 1 in 8 shapes."""
    out = {key: results[f"student/{key}_chance"] for _, key in METRICS
           if f"student/{key}_chance" in results}
    if scenes:
        for key in ("synthetic/retrieval/i2t_R@1", "synthetic/retrieval/t2i_R@1",
                    "synthetic/small_object/t2i_R@10"):
            out[key] = 100.0 * min(int(key.rsplit("@", 1)[1]), scenes) / scenes
    out["synthetic/classification/top1"] = 100.0 / 8
    return out


def write_table(cols, chance: Dict[str, float], path: str, steps: int, batch_size: int,
                scenes: int) -> str:
    lines = [f"Held-out synthetic scenes ({scenes}), percent, after {steps} steps of batch "
             f"{batch_size}; chance = a random ranking or choice.",
             "", "| metric | " + " | ".join(label for label, _ in cols) + " | chance |",
             "|---|" + "---|" * (len(cols) + 1)]
    for label, key in METRICS:
        cells = [f"{c[key]:.1f}" for _, c in cols]
        cells.append(f"{chance[key]:.1f}" if key in chance else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def plot(cols, chance: Dict[str, float], curves: Dict[str, Tuple[List[int], List[float]]],
         path: str) -> None:
    """Training loss curves (left) and every table row as grouped horizontal bars with its
    chance level as a black tick (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 7.5),
                                      gridspec_kw={"width_ratios": [1, 1.6]})
    for name, (steps, losses) in curves.items():
        left.plot(steps, losses, label=f"{name} clip_loss")
    left.set_xlabel("step")
    left.set_ylabel("CLIP InfoNCE (train)")
    left.legend()
    left.set_title("training loss")
    height = 0.8 / len(cols)
    rows = list(range(len(METRICS)))[::-1]  # first table row at the top
    for i, (label, values) in enumerate(cols):
        ys = [r + (len(cols) - 1 - i) * height - 0.4 + height / 2 for r in rows]
        right.barh(ys, [values[key] for _, key in METRICS], height=height, label=label)
    for r, (_, key) in zip(rows, METRICS):
        if key in chance:
            right.plot([chance[key]] * 2, [r - 0.45, r + 0.45], color="black", linewidth=1.5,
                       label="chance" if r == rows[0] else "_")
    right.set_yticks(rows)
    right.set_yticklabels([label for label, _ in METRICS], fontsize=8)
    right.set_xlabel("percent")
    right.set_title("held-out zero-shot results (fine-grained first)")
    right.legend(fontsize=8, loc="lower right")
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
    scenes = num_scenes(dirs["clip"])
    chance = chance_levels(results["clip"], scenes)
    table = write_table(cols, chance, os.path.join(args.out, "comparison.md"), args.steps,
                        args.batch_size, scenes)
    plot(cols, chance, {name: read_losses(d) for name, d in dirs.items()},
         os.path.join(args.out, "comparison.png"))
    from cosmos.visualization.report import write_report
    report = write_report(args.out, dirs,
                          title="make demo: COSMOS and CLIP on the synthetic scenes",
                          intro=[table, "![comparison](comparison.png)"])
    print("\n" + table)
    print(f"written {args.out}/comparison.md, {args.out}/comparison.png and the run report "
          f"{report}")


if __name__ == "__main__":
    main(sys.argv[1:])
