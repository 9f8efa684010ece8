#!/usr/bin/env python
"""Write a run report (markdown) for one or more run directories.

    python tools/report.py runs/cosmos_cc3m [runs/clip_cc3m ...] [--out DIR] [--scenes 3]
        [--labels A,B,...]

The report (``<out>/report.md``, default: the first run directory) shows the final metric table
of every run, the training curves (each run's ``plots/``), cross-attention maps of held-out
synthetic scenes and zero-shot segmentation overlays, where the runs' configs have them.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import run_cli  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument, comma_list  # noqa: E402
from cosmos.utils.errors import CosmosError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--labels", type=comma_list, default=None, metavar="A,B,...",
                        help="one per run, comma-separated (default: the directory names)")
    add_out_argument(parser, "where report.md goes (default: the first run directory)")
    parser.add_argument("--scenes", type=int, default=3, help="held-out scenes with attention maps")
    parser.add_argument("--segmentation-images", type=int, default=3)
    parser.add_argument("--title", default="Run report")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    from cosmos.visualization.report import write_report

    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs) or len(set(labels)) != len(labels):
        raise CosmosError("give one distinct --labels entry per run directory")
    for run in args.runs:
        if not os.path.isdir(run):
            raise CosmosError(f"run directory not found: {run}")
    path = write_report(args.out or args.runs[0], dict(zip(labels, args.runs)), title=args.title,
                        attention_scenes=args.scenes, segmentation_images=args.segmentation_images)
    print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main, parse_args())
