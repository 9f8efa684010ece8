#!/usr/bin/env python
"""Submit a training run to SLURM (submitit): one task per GPU, requeued on preemption.

    python tools/submit.py --config-file configs/cosmos/cosmos_vitb16_cc3m.py \\
        --nodes 16 --gpus-per-node 4 --partition gpu --time-min 4320 \\
        train.output_dir=/checkpoints/$USER/cosmos_cc3m

The run directory (``train.output_dir``) holds submitit's files under ``submitit/<job id>/``.
On preemption or the time-limit warning every rank finishes its step, rank 0 saves a checkpoint
and the job requeues; the requeued job resumes from the run directory's last checkpoint at the
same data position. Submitting again with the same output_dir also resumes.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import load_config, prepare_output_dir, run_cli  # noqa: E402
from cosmos.launch.slurm import (  # noqa: E402
    add_slurm_arguments, describe, options_from_args, submit_training, train_args, wait_for)
from cosmos.utils.cli import ArgumentParser, add_resume_arguments  # noqa: E402
from cosmos.utils.errors import CosmosError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    add_resume_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="block until the job has ended")
    add_slurm_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config_file, args.opts)  # a bad override fails here, not in the queue
    output_dir = os.path.abspath(prepare_output_dir(cfg.train.output_dir))
    opts = [o for o in args.opts if not o.startswith("train.output_dir=")]
    resume = os.path.abspath(args.resume) if args.resume not in (None, "latest") else args.resume
    run = train_args(args.config_file, [*opts, f"train.output_dir={output_dir}"], args.no_resume,
                     resume)
    options = options_from_args(args)
    job = submit_training(run, output_dir, options)
    print(f"submitted {describe(job, options)}")
    print(f"run directory: {output_dir}")
    print(f"job logs: {os.path.join(output_dir, 'submitit', str(job.job_id))}")
    if args.wait:
        failures = wait_for([job])
        if failures:
            raise CosmosError(f"job {job.job_id} failed: {failures[str(job.job_id)]}")
        print(f"job {job.job_id} finished")
    return 0


if __name__ == "__main__":
    run_cli(main, parse_args())
