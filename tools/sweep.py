#!/usr/bin/env python
"""Run a grid of config overrides (an ablation) and gather the final metrics in one table.

    python tools/sweep.py --config-file configs/cosmos/cosmos_vitb16_cc3m.py \\
        --grid 'model.distill_weight=[0.5,1.0]' --grid 'ema.momentum.base=[0.99,0.999]' \\
        --nodes 16 --gpus-per-node 4 --partition gpu --time-min 4320 train.max_iter=20000

With SLURM (sbatch on PATH) the grid is one job array, each element a requeueable training
like tools/submit.py's; without it (or with --launcher local) the runs go one after another on
this machine. Each run writes to <out>/<name>; the sweep writes sweep.md, sweep.csv and
sweep.png there (with --wait, or later with --collect <out>). Lists are comma-separated
(``--metrics '*R@1,loss'``). A grid axis ``config=[A.py,B.py]`` varies the config file (then
--config-file is not needed); a run that fails is recorded as "failed: <reason>" and the
next one runs; a varying ``train.seed`` adds mean ± std over seeds (sweep.md,
sweep_mean.csv). See docs/distributed.md.
"""
import argparse
import os
import shutil
import sys

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
    parser.add_argument("--wait", action="store_true",
                        help="SLURM: wait for the array, then collect")
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


def main(args: argparse.Namespace) -> int:
    if args.collect:
        data, runs = S.load_manifest(args.collect)
        return finish(args.collect, runs, args.metrics)
    grid = S.parse_grid(args.grid)
    by_config = S.CONFIG_KEY in dict(grid)
    if by_config == bool(args.config_file):
        raise CosmosError("give the config either as --config-file or as a grid axis "
                          f"{S.CONFIG_KEY}=[A.py,B.py] (or --collect SWEEP_DIR)")
    fixed = [o for o in args.opts if not o.startswith("train.output_dir=")]
    name = os.path.splitext(os.path.basename(args.config_file or "configs"))[0]
    sweep_dir = os.path.abspath(args.out or os.path.join("runs", "sweeps", name))
    runs = S.plan(S.expand(grid), sweep_dir)
    config_file = os.path.abspath(args.config_file) if args.config_file else ""
    runnable = S.check_runs(runs, config_file, fixed, load_config)  # before anything starts
    prepare_output_dir(sweep_dir)
    launcher = args.launcher
    if launcher == "auto":
        launcher = "slurm" if shutil.which("sbatch") else "local"
    print(f"sweep of {len(runs)} runs ({launcher}) in {sweep_dir}")
    for run in runs:
        if run.status == "failed":
            print(f"  {run.name}: failed: {run.error}", flush=True)
    if launcher == "local":
        S.save_manifest(sweep_dir, config_file, fixed, runs)
        S.run_local(runs, config_file, fixed, os.path.join(REPO, "tools", "train_net.py"),
                    on_update=lambda: S.save_manifest(sweep_dir, config_file, fixed, runs))
        return finish(sweep_dir, runs, args.metrics)
    options = options_from_args(args)
    jobs = submit_array([train_args(r.config_file(config_file), [
        *fixed, *r.config_overrides(), f"train.output_dir={r.output_dir}"]) for r in runnable],
        os.path.join(sweep_dir, "submitit"), options)
    for run, job in zip(runnable, jobs):
        run.job_id, run.status = str(job.job_id), "submitted"
        print(f"  job {job.job_id}: {run.name}")
    S.save_manifest(sweep_dir, config_file, fixed, runs)
    if not args.wait:
        print(f"collect the results with: python tools/sweep.py --collect {sweep_dir}")
        return 0
    failures = wait_for(jobs)
    for run in runnable:
        if run.job_id in failures:
            run.fail(failures[run.job_id])
            print(f"job {run.job_id} ({run.name}) failed: {failures[run.job_id]}", file=sys.stderr)
    S.save_manifest(sweep_dir, config_file, fixed, runs)
    return finish(sweep_dir, runs, args.metrics)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))
