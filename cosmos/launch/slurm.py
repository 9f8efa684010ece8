"""SLURM through submitit: one task per GPU, preemption and time limits end in a checkpoint and a
requeue, and the requeued job resumes from the run directory's last checkpoint.

How a preemption (or the time-limit warning, ``USR2``) is handled in each task:
  1. our handler only records the signal (it replaces submitit's, which it keeps);
  2. every rank finishes its step, the ranks agree on the stop, rank 0 saves the checkpoint;
  3. rank 0 calls submitit's handler, which calls :meth:`TrainJob.checkpoint` (a fresh job with
     the same arguments: no checkpoint path is frozen into it), requeues the job and exits;
     the other ranks wait for SLURM to stop them.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import signal
import shutil
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from cosmos.distributed import preemption
from cosmos.distributed.preemption import TrainingInterrupted
from cosmos.utils.errors import CosmosError

logger = logging.getLogger("cosmos")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# After rank 0 has requeued the job, SLURM stops the other tasks; they give up after this long.
WAIT_FOR_REQUEUE_S = 120


class TrainJob:
    """The submitit callable of a training run: every SLURM task runs it in its own process.

    ``args``: the namespace of ``tools/train_net.py`` (config file, overrides, flags).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def __call__(self) -> Dict[str, float]:
        import submitit

        from cosmos.engine.train_entry import train_main

        env = submitit.JobEnvironment()
        usr_signal = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        preemption.install([usr_signal])
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        try:
            return train_main(self.args, stop_signals=None)
        except TrainingInterrupted as exc:
            logger.warning("job %s task %d stopped at step %d (start #%d of this job)", env.job_id,
                           env.global_rank, exc.iter, int(restarts) + 1)
            submitit_handler = preemption.previous_handler(usr_signal)
            if env.global_rank == 0 and submitit_handler is not None:
                submitit_handler(exc.signum, None)  # checkpoint() + requeue + exit
            time.sleep(WAIT_FOR_REQUEUE_S)
            raise
        finally:
            preemption.uninstall()

    def checkpoint(self, *args: Any, **kwargs: Any):
        """What submitit requeues: the same run, resuming from its run directory."""
        import submitit

        again = copy.copy(self.args)
        again.no_resume, again.resume = False, None  # continue from the run directory
        return submitit.helpers.DelayedSubmission(TrainJob(again))


@dataclass
class SlurmOptions:
    """Resources and scheduling of one job (``tools/submit.py``'s options)."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 0        # default: gpus_per_node, or 1 on CPU-only partitions
    cpus_per_task: int = 10
    partition: str = ""
    time_min: int = 60 * 24
    account: str = ""
    qos: str = ""
    constraint: str = ""
    mem_gb: float = 0.0
    exclude: str = ""
    comment: str = ""
    job_name: str = "cosmos"
    signal_delay_s: int = 120      # USR2 this long before the time limit
    max_requeues: int = 20         # time limits and preemptions submitit requeues
    array_parallelism: int = 256

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or self.gpus_per_node or 1


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    """The SLURM options of ``tools/submit.py`` and ``tools/sweep.py``."""
    d = SlurmOptions()
    g = parser.add_argument_group("SLURM")
    g.add_argument("--nodes", type=int, default=d.nodes)
    g.add_argument("--gpus-per-node", type=int, default=d.gpus_per_node,
                   help="GPUs per node; one task per GPU (0: CPU-only job)")
    g.add_argument("--tasks-per-node", type=int, default=d.tasks_per_node,
                   help="processes per node (default: --gpus-per-node, or 1)")
    g.add_argument("--cpus-per-task", type=int, default=d.cpus_per_task)
    g.add_argument("--partition", default=d.partition)
    g.add_argument("--time-min", type=int, default=d.time_min, help="time limit in minutes")
    g.add_argument("--account", default=d.account)
    g.add_argument("--qos", default=d.qos)
    g.add_argument("--constraint", default=d.constraint, help='e.g. "volta32gb"')
    g.add_argument("--mem-gb", type=float, default=d.mem_gb, help="memory per node (0: default)")
    g.add_argument("--exclude", default=d.exclude, help="nodes to avoid, e.g. node[01-03]")
    g.add_argument("--comment", default=d.comment)
    g.add_argument("--job-name", default=d.job_name)
    g.add_argument("--signal-delay-s", type=int, default=d.signal_delay_s,
                   help="USR2 this many seconds before the time limit: checkpoint and requeue")
    g.add_argument("--max-requeues", type=int, default=d.max_requeues,
                   help="how many time limits / preemptions are requeued")


def options_from_args(args: argparse.Namespace) -> SlurmOptions:
    fields = SlurmOptions.__dataclass_fields__
    return SlurmOptions(**{k: getattr(args, k) for k in fields if hasattr(args, k)})


def build_executor(folder: str, options: SlurmOptions):
    """A submitit SLURM executor writing its files under ``folder`` (``%j``: the job id)."""
    import submitit

    if shutil.which("sbatch") is None:
        raise CosmosError("SLURM not found: no sbatch on PATH (run tools/train_net.py instead, "
                          "or start a local cluster with tools/local_slurm.sh start)")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     slurm_max_num_timeout=options.max_requeues)
    params: Dict[str, Any] = dict(
        name=options.job_name, nodes=options.nodes, tasks_per_node=options.tasks,
        cpus_per_task=options.cpus_per_task, timeout_min=options.time_min,
        slurm_signal_delay_s=options.signal_delay_s,
        slurm_array_parallelism=options.array_parallelism,
        # the job imports this checkout, installed or not
        slurm_setup=[f'export PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}"'],
    )
    if options.gpus_per_node:
        params["gpus_per_node"] = options.gpus_per_node
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    for name in ("partition", "account", "qos", "constraint", "exclude", "comment"):
        value = getattr(options, name)
        if value:
            params[f"slurm_{name}"] = value
    executor.update_parameters(**params)
    return executor


def train_args(config_file: str, opts: Sequence[str], no_resume: bool = False,
               resume: Optional[str] = None) -> argparse.Namespace:
    """The namespace a :class:`TrainJob` passes to the training entry (``resume``: None,
    ``latest`` or a checkpoint path, as ``tools/train_net.py --resume``)."""
    return argparse.Namespace(config_file=os.path.abspath(config_file), opts=list(opts),
                              eval_only=False, checkpoint="", resume=resume, no_resume=no_resume)


def submit_training(args: argparse.Namespace, output_dir: str, options: SlurmOptions):
    """Submit one training run whose run directory is ``output_dir``; returns the submitit job."""
    executor = build_executor(os.path.join(output_dir, "submitit", "%j"), options)
    return executor.submit(TrainJob(args))


def submit_array(runs: List[argparse.Namespace], folder: str, options: SlurmOptions) -> list:
    """Submit several training runs as one SLURM job array; returns their jobs."""
    executor = build_executor(os.path.join(folder, "%j"), options)
    with executor.batch():
        jobs = [executor.submit(TrainJob(run)) for run in runs]
    return jobs


def describe(job: Any, options: SlurmOptions) -> str:
    gpus = f" x {options.gpus_per_node} GPUs" if options.gpus_per_node else ""
    return (f"job {job.job_id}: {options.nodes} node(s){gpus}, {options.nodes * options.tasks} "
            f"task(s), {options.time_min} min, partition {options.partition or '(default)'}")


def wait_for(jobs: Sequence[Any]) -> Dict[str, str]:
    """Block until every job has ended; ``{job id: one-line reason}`` for those that failed."""
    failures: Dict[str, str] = {}
    for job in jobs:
        try:
            job.results()
        except Exception as exc:  # submitit raises with the job's own error text
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            failures[str(job.job_id)] = lines[-1] if lines else type(exc).__name__
    return failures
