#!/usr/bin/env python
"""Run a grid of config overrides (an ablation) and gather the final metrics in one table.

    python tools/sweep.py --config-file configs/cosmos/cosmos_vitb16_cc3m.py \\
        --grid 'model.distill_weight=[0.5,1.0]' --grid 'ema.momentum.base=[0.99,0.999]' \\
        --nodes 16 --gpus-per-node 4 --partition gpu --time-min 4320 train.max_iter=20000

With SLURM (sbatch on PATH) the grid is one job array, each element a requeueable training
like tools/submit.py's; without it (or with --launcher local) the runs go one after another on
this machine. Each run writes to <out>/<name>; the sweep writes sweep.md, sweep.csv and
sweep.png there (with --wait, or later with --collect <out>). Lists are comma-separated
(``--metrics '*R@1,loss'``).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cosmos.engine.defaults import load_config, prepare_output_dir, run_cli  # noqa: E402
from cosmos.launch import sweep as S  # noqa: E402
from cosmos.launch.slurm import (  # noqa: E402
    add_slurm_arguments, options_from_args, submit_array, train_args, wait_for)
from cosmos.utils.cli import ArgumentParser, add_out_argument, comma_list  # noqa: E402
from cosmos.utils.errors import CosmosError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--config-file", metavar="FILE", help="the base config")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=[v1,v2]",
                        help="one axis of the grid (repeat for more axes)")
    add_out_argument(parser, "the sweep directory (default: runs/sweeps/<config name>)",
                     old=("--sweep-dir",))
    parser.add_argument("--launcher", choices=("auto", "slurm", "local"), default="auto",
                        help="auto: a SLURM job array when sbatch exists, else local runs")
    parser.add_argument("--wait", action="store_true", help="SLURM: wait for the array, then collect")
    parser.add_argument("--collect", metavar="SWEEP_DIR", default="",
                        help="only gather the results of an earlier sweep")
    parser.add_argument("--metrics", type=comma_list, default=list(S.DEFAULT_METRICS),
                        metavar="P,P,...",
                        help="patterns of the metrics in the table (fnmatch), comma-separated")
    add_slurm_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="overrides shared by every run")
    return parser.parse_args(argv)


def finish(sweep_dir: str, runs, patterns) -> int:
    table, _ = S.collect(sweep_dir, runs, patterns)
    print(table)
    print(S.summary_line(runs, sweep_dir))
    return 1 if S.failed_runs(runs) else 0


def run_locally(config_file: str, fixed, runs) -> None:
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.name}", flush=True)
        start = time.time()
        overrides = [*fixed, *(f"{k}={v}" for k, v in run.overrides.items()),
                     f"train.output_dir={run.output_dir}"]
        res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py"),
                              "--config-file", config_file, *overrides],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        run.status = "done" if res.returncode == 0 else "failed"
        reason = res.stderr.strip().splitlines()[-1] if res.returncode and res.stderr.strip() else ""
        print(f"      {run.status} in {time.time() - start:.0f} s {reason}", flush=True)


def main(args: argparse.Namespace) -> int:
    if args.collect:
        data, runs = S.load_manifest(args.collect)
        return finish(args.collect, runs, args.metrics)
    if not args.config_file:
        raise CosmosError("--config-file is required (or --collect SWEEP_DIR)")
    grid = S.parse_grid(args.grid)
    points = S.expand(grid)
    fixed = [o for o in args.opts if not o.startswith("train.output_dir=")]
    for point in points:  # every point must be a valid config before anything starts
        load_config(args.config_file, [*fixed, *(f"{k}={v}" for k, v in point.items())])
    name = os.path.splitext(os.path.basename(args.config_file))[0]
    sweep_dir = os.path.abspath(prepare_output_dir(args.out or
                                                   os.path.join("runs", "sweeps", name)))
    runs = S.plan(points, sweep_dir)
    config_file = os.path.abspath(args.config_file)
    launcher = args.launcher
    if launcher == "auto":
        launcher = "slurm" if shutil.which("sbatch") else "local"
    print(f"sweep of {len(runs)} runs ({launcher}) in {sweep_dir}")
    if launcher == "local":
        S.save_manifest(sweep_dir, config_file, fixed, runs)
        run_locally(config_file, fixed, runs)
        S.save_manifest(sweep_dir, config_file, fixed, runs)
        return finish(sweep_dir, runs, args.metrics)
    options = options_from_args(args)
    jobs = submit_array([train_args(config_file, [*fixed, *(f"{k}={v}" for k, v in r.overrides.items()),
                                                  f"train.output_dir={r.output_dir}"]) for r in runs],
                        os.path.join(sweep_dir, "submitit"), options)
    for run, job in zip(runs, jobs):
        run.job_id, run.status = str(job.job_id), "submitted"
        print(f"  job {job.job_id}: {run.name}")
    S.save_manifest(sweep_dir, config_file, fixed, runs)
    if not args.wait:
        print(f"collect the results with: python tools/sweep.py --collect {sweep_dir}")
        return 0
    failures = wait_for(jobs)
    for run in runs:
        if run.job_id in failures:
            run.status = "failed"
            print(f"job {run.job_id} ({run.name}) failed: {failures[run.job_id]}", file=sys.stderr)
    S.save_manifest(sweep_dir, config_file, fixed, runs)
    return finish(sweep_dir, runs, args.metrics)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))
