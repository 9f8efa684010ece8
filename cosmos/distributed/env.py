"""Where this process sits in a distributed job, and joining the process group.

The environment is read in this order: torchrun's variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), then SLURM's (``SLURM_PROCID``,
``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_JOB_NODELIST``), else a single process. NCCL on
GPUs, gloo on CPU.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
from dataclasses import dataclass
from typing import List, Mapping, Optional

import torch
import torch.distributed as dist

from cosmos.utils.errors import CosmosError

logger = logging.getLogger(__name__)

# The rendezvous port of a SLURM job when none is given: the same on every task of the job, and
# different for jobs that share a node (derived from the job id).
SLURM_PORT_BASE, SLURM_PORT_SPAN = 15000, 20000


@dataclass(frozen=True)
class DistEnv:
    """One process's place in the job. ``source``: "torchrun", "slurm" or "single"."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def expand_nodelist(nodelist: str) -> List[str]:
    """SLURM's compressed host list → host names, e.g. ``gpu[01-03,07],cpu5`` → 4 + 1 hosts."""
    hosts: List[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist):
        prefix, ranges = match.group(1), match.group(2)
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            if not last:
                hosts.append(prefix + first)
                continue
            hosts += [prefix + str(i).zfill(len(first)) for i in range(int(first), int(last) + 1)]
    return [h for h in hosts if h]


def _int(environ: Mapping[str, str], key: str, default: Optional[int] = None) -> int:
    value = environ.get(key)
    if value in (None, ""):
        if default is None:
            raise CosmosError(f"environment variable {key} is missing")
        return default
    try:
        return int(value)
    except ValueError:
        raise CosmosError(f"environment variable {key}={value!r} is not an integer") from None


def detect_env(environ: Optional[Mapping[str, str]] = None) -> DistEnv:
    """Read the job's layout from the environment (torchrun first, then SLURM, else single)."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return DistEnv(rank=_int(environ, "RANK"), world_size=_int(environ, "WORLD_SIZE"),
                       local_rank=_int(environ, "LOCAL_RANK", 0),
                       local_world_size=_int(environ, "LOCAL_WORLD_SIZE", 1),
                       master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
                       master_port=_int(environ, "MASTER_PORT", 29500), source="torchrun")
    if "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ and "SLURM_JOB_ID" in environ:
        nodelist = environ.get("SLURM_JOB_NODELIST", environ.get("SLURM_NODELIST", ""))
        hosts = expand_nodelist(nodelist)
        nodes = max(1, _int(environ, "SLURM_JOB_NUM_NODES", len(hosts) or 1))
        port = environ.get("COSMOS_MASTER_PORT") or (
            SLURM_PORT_BASE + _int(environ, "SLURM_JOB_ID") % SLURM_PORT_SPAN)
        return DistEnv(rank=_int(environ, "SLURM_PROCID"), world_size=_int(environ, "SLURM_NTASKS"),
                       local_rank=_int(environ, "SLURM_LOCALID", 0),
                       local_world_size=_int(environ, "SLURM_NTASKS", 1) // nodes,
                       master_addr=(environ.get("COSMOS_MASTER_ADDR")
                                    or (hosts[0] if hosts else "127.0.0.1")),
                       master_port=int(port), source="slurm")
    return DistEnv()


def init_distributed(env: Optional[DistEnv] = None, backend: str = "auto",
                     timeout_min: float = 30.0) -> DistEnv:
    """Join the process group described by ``env`` (detected when None); no-op for one process.

    ``backend``: "auto" (NCCL when CUDA is available, else gloo), "nccl" or "gloo". On GPUs each
    process uses ``cuda:local_rank``.
    """
    env = detect_env() if env is None else env
    if not env.distributed or dist.is_initialized():
        return env
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        if torch.cuda.device_count() <= env.local_rank:
            raise CosmosError(f"rank {env.rank} needs cuda:{env.local_rank} but this node has "
                              f"{torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(env.local_rank)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.master_addr, str(env.master_port)
    dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(minutes=timeout_min))
    logger.info("joined %s process group: rank %d of %d (local %d) via %s:%d, from %s", backend,
                env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port,
                env.source)
    return env


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(env: DistEnv, name: str = "auto") -> torch.device:
    """The device of this process: ``cuda:local_rank`` for "auto"/"cuda" on GPUs, else ``name``."""
    if name in ("auto", "", None):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", env.local_rank)
    return torch.device(name)
