"""Start N processes on this machine (one per GPU, or N CPU processes with gloo).

Each child gets torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so the code that joins the process group
is the same for ``--num-gpus``, torchrun and SLURM.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any, Callable

import torch
import torch.multiprocessing as mp

from cosmos.distributed.preemption import STOP_SIGNALS
from cosmos.utils.errors import CosmosError


def free_port() -> int:
    """A TCP port that was free a moment ago on localhost."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(local_rank: int, fn: Callable[[Any], Any], args: Any, num_procs: int,
           port: int) -> None:
    os.environ.update(RANK=str(local_rank), WORLD_SIZE=str(num_procs),
                      LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(num_procs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
    fn(args)


def launch(fn: Callable[[Any], Any], num_procs: int, args: Any, use_gpus: bool = False) -> Any:
    """Run ``fn(args)`` in ``num_procs`` processes (in this process when 1).

    ``use_gpus``: one process per GPU; refused when the machine has fewer GPUs. A child that
    fails makes the launch exit with that child's exit code after the others are stopped.
    """
    if num_procs < 1:
        raise CosmosError(f"the number of processes must be at least 1, got {num_procs}")
    if use_gpus and torch.cuda.device_count() < num_procs:
        raise CosmosError(f"--num-gpus {num_procs} but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s); use --num-procs for "
                          "CPU processes")
    if num_procs == 1:
        return fn(args)
    # Stop signals reach the children from the process group (Ctrl-C, SLURM, kill -TERM -PGID);
    # the launcher itself ignores them so that it waits for the children's checkpoint.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        mp.start_processes(_child, args=(fn, args, num_procs, free_port()), nprocs=num_procs,
                           start_method="spawn", join=True)
    except mp.ProcessExitedException as exc:
        if exc.exit_code and exc.exit_code > 128:  # TrainingInterrupted: the checkpoint is saved
            print(f"stopped by signal {exc.exit_code - 128} after saving a checkpoint; run the "
                  "same command again to resume", file=sys.stderr)
            sys.exit(exc.exit_code)
        print(f"error: process {exc.error_index} of {num_procs} exited with code {exc.exit_code}; "
              "see its log (log.txt.rankN in the run directory)", file=sys.stderr)
        sys.exit(exc.exit_code if exc.exit_code and exc.exit_code > 0 else 1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return None
