"""One writer per run directory: an ``flock`` on ``<run dir>/.lock`` that names its holder.

The lock file holds one JSON line (host, pid, SLURM job id, start time) while a training process
owns the directory, and is emptied when it ends. A second process is refused with one line that
names the holder. A holder that is gone does not keep the directory:

- same host: the kernel drops an ``flock`` when its process dies (``kill -9`` included);
- another host (shared file systems whose locks are not shared between nodes): the holder's SLURM
  job is asked about (``squeue``); a job that is no longer running does not keep the lock;
- the same SLURM job id is the same owner: a requeued job takes over from its earlier run (after
  waiting a little for that run to let go, when it is still stopping on this host).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any, Dict, Optional

from cosmos.utils.errors import CosmosError


LOCK_NAME = ".lock"
_RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING",
                   "STAGE_OUT", "RESIZING"}


class RunDirectoryBusy(CosmosError):
    """Another live process trains into this run directory."""


def holder_info() -> Dict[str, Any]:
    """Who this process is: host, pid, SLURM job id (or None), start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None,
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def slurm_job_running(job_id: str, timeout: float = 10.0) -> Optional[bool]:
    """True/False from ``squeue`` (falling back to ``scontrol``); None when neither answers."""
    if shutil.which("squeue"):
        try:
            res = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"],
                                 capture_output=True, text=True, timeout=timeout)
            if res.returncode == 0:
                states = {s.strip() for s in res.stdout.split()}
                return bool(states & _RUNNING_STATES)
            if "invalid job id" in (res.stderr or "").lower():
                return False
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which("scontrol"):
        try:
            res = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True,
                                 text=True, timeout=timeout)
            if res.returncode != 0:
                return False if "invalid job id" in (res.stderr or "").lower() else None
            for word in res.stdout.split():
                if word.startswith("JobState="):
                    return word.split("=", 1)[1] in _RUNNING_STATES
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(info: Dict[str, Any]) -> str:
    text = f"pid {info.get('pid')} on {info.get('host')}"
    if info.get("slurm_job_id"):
        text += f" (SLURM job {info['slurm_job_id']})"
    if info.get("since"):
        text += f" since {info['since']}"
    return text


class RunLock:
    """``acquire()`` or a one-line :class:`RunDirectoryBusy`; ``release()`` (also at exit:
    the kernel drops the lock with the process)."""

    def __init__(self, output_dir: str, same_job_wait_s: float = 60.0) -> None:
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_NAME)
        self.same_job_wait_s = same_job_wait_s
        self._fd: Optional[int] = None
        self.took_over: Optional[Dict[str, Any]] = None  # the gone holder this lock replaced

    def _read(self, fd: int) -> Optional[Dict[str, Any]]:
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            info = json.loads(text) if text else None
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _try_flock(self, fd: int) -> Optional[bool]:
        """True: locked; False: another process holds it; None: no flock on this file system."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return None
            raise

    def _holder_gone(self, info: Dict[str, Any], me: Dict[str, Any], flocked: bool) -> bool:
        """Whether the holder named in the file (which did not release it) is gone."""
        if info.get("slurm_job_id") and info["slurm_job_id"] == me["slurm_job_id"]:
            return True  # the same job, requeued: the same owner
        if info.get("host") == me["host"]:
            return flocked or not _pid_alive(int(info.get("pid", 0) or 0))
        if info.get("slurm_job_id"):
            running = slurm_job_running(info["slurm_job_id"])
            if running is not None:
                return not running
        return flocked  # another host, nothing to ask: trust the lock of a shared file system

    def _busy(self, info: Optional[Dict[str, Any]]) -> RunDirectoryBusy:
        holder = describe_holder(info) if info else "another process"
        return RunDirectoryBusy(
            f"run directory {self.output_dir} is in use by {holder}; wait for it to end or "
            f"stop it, or choose another train.output_dir (remove {self.path} only if that "
            "process is certainly gone)")

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        me = holder_info()
        deadline = time.monotonic() + self.same_job_wait_s
        try:
            while True:
                flocked = self._try_flock(fd)
                info = self._read(fd)
                if flocked is False:
                    same_job = bool(info and me["slurm_job_id"]
                                    and info.get("slurm_job_id") == me["slurm_job_id"])
                    if same_job and time.monotonic() < deadline:
                        time.sleep(1.0)  # our own earlier run (requeued job) is still stopping
                        continue
                    raise self._busy(info)
                if info and not self._holder_gone(info, me, bool(flocked)):
                    raise self._busy(info)
                self.took_over = info  # logged by the caller once logging is set up
                break
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # also drops our flock, if we got it
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no holder: nobody needs to ask about us
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
