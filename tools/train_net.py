#!/usr/bin/env python
"""Train (or evaluate) any cosmos LazyConfig on this machine.

    python tools/train_net.py --config-file configs/clip/clip_tiny_synthetic.py [key=value ...]
    python tools/train_net.py --num-gpus 8 --config-file ...      # DDP over 8 GPUs
    python tools/train_net.py --num-procs 2 --config-file ...     # 2 CPU processes (gloo)
    torchrun --nproc-per-node 8 tools/train_net.py --config-file ...

Running the same command again in the same ``train.output_dir`` resumes from its last checkpoint;
``--resume`` requires that checkpoint, ``--resume PATH`` starts from another run's checkpoint,
``--no-resume`` refuses a run directory with checkpoints (docs/cli.md).
SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 make every rank finish its step, save a checkpoint and exit
(code 128 + signal); send the signal twice to stop at once. SLURM: see tools/submit.py.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.distributed.preemption import TrainingInterrupted  # noqa: E402
from cosmos.engine.defaults import default_argument_parser, load_config, run_cli  # noqa: E402
from cosmos.engine.train_entry import train_main  # noqa: E402
from cosmos.launch.local import launch  # noqa: E402

logger = logging.getLogger("cosmos")


def main(args):
    try:
        return train_main(args)
    except TrainingInterrupted as exc:
        sys.exit(128 + int(exc.signum))


def parse_args(argv=None):
    parser = default_argument_parser(__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-gpus", type=int, default=0, metavar="N",
                       help="start N processes, one per GPU (DDP)")
    group.add_argument("--num-procs", type=int, default=0, metavar="N",
                       help="start N processes on the config's device (CPU: gloo)")
    return parser.parse_args(argv)


def process_main(args):
    """One process: user errors print one line and exit 2 (in every child too)."""
    return run_cli(main, args)


def cli(args):
    if args.num_gpus or args.num_procs:
        load_config(args.config_file, args.opts)  # a bad config fails once, before any process
        return launch(process_main, args.num_gpus or args.num_procs, args,
                      use_gpus=bool(args.num_gpus))
    return process_main(args)


if __name__ == "__main__":
    run_cli(cli, parse_args())
