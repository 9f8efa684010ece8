"""A real SLURM (tools/local_slurm.sh start, which .ci/run does): submit a tiny 2-task training
through tools/submit.py, preempt it with USR2 and check that it requeued and finished from its
checkpoint; run a 2-point sweep as a job array. Skipped, with the reason, where SLURM is not up."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import DEMO_CONFIG, REPO, tiny_overrides


def _slurm_state() -> str:
    """Why SLURM cannot be used here, or "" when its node accepts jobs."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (start it with: bash tools/local_slurm.sh start)"
    res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    states = res.stdout.split()
    if res.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        return f"SLURM is not running here (sinfo: {res.stdout.strip() or res.stderr.strip()!r})"
    return ""


pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(bool(_slurm_state()), reason=_slurm_state() or "SLURM is up")]


def _run_tool(tool: str, args, cwd: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", tool), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _job_field(job_id: str, field: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    match = re.search(rf"\b{field}=(\S+)", out)
    return match.group(1) if match else ""


def _metric_rows(run_dir: str) -> list:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.distributed
def test_preempted_job_requeues_and_resumes_from_its_checkpoint(tmp_path, synthetic_shards) -> None:
    run = str(tmp_path / "run")
    steps = 16
    res = _run_tool("submit.py", [
        "--config-file", DEMO_CONFIG, "--tasks-per-node", "2", "--cpus-per-task", "1",
        "--partition", os.environ.get("SLURM_LOCAL_PARTITION", "debug"),
        # >= 60 min: submitit calls a USR2 in the first 80 % of the time a preemption
        "--time-min", "60", "--job-name", "cosmos-test-preempt",
        *tiny_overrides(run, synthetic_shards, steps), "train.checkpoint_period=100",
        "+train.hooks=[{_target_: tests.helpers.SlowSteps, seconds: 0.4}]"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    job_id = re.search(r"submitted job (\d+)", res.stdout).group(1)
    assert os.path.isdir(os.path.join(run, "submitit", job_id))  # submitit's files in the run dir

    _wait(lambda: len(_metric_rows(run)) >= 3, 120, "three training steps")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # what a preemption sends
    _wait(lambda: _job_field(job_id, "JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"),
          180, "the requeued job to finish")
    log = open(os.path.join(run, "log.txt")).read()
    assert _job_field(job_id, "JobState") == "COMPLETED", log[-3000:]
    assert _job_field(job_id, "Restarts") == "1"
    stopped = int(re.search(r"interrupted by SIGUSR2 after step (\d+)", log).group(1))
    assert 3 <= stopped < steps
    assert f"resumed at step {stopped}" in log
    rank1 = open(os.path.join(run, "log.txt.rank1")).read()
    assert f"interrupted by SIGUSR2 after step {stopped}" in rank1  # both ranks stopped there
    submitit_dir = os.path.join(run, "submitit", job_id)
    submitit_log = "".join(open(os.path.join(submitit_dir, f"{job_id}_0_log.{ext}")).read()
                           for ext in ("out", "err"))
    assert "this job is preempted" in submitit_log and "Calling checkpoint method" in submitit_log
    rows = [r for r in _metric_rows(run) if "loss" in r]
    assert [r["iter"] for r in rows] == list(range(1, steps + 1))
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
        "last_checkpoint", f"model_{stopped:07d}.pth", f"model_{steps:07d}.pth"]
    assert os.path.isfile(os.path.join(run, "student.pth"))


def test_sweep_runs_as_a_job_array_and_collects(tmp_path, synthetic_shards) -> None:
    sweep_dir = tmp_path / "sweep"
    fixed = [o for o in tiny_overrides(str(tmp_path / "unused"), synthetic_shards, max_iter=2)
             if not o.startswith("train.output_dir")]
    res = _run_tool("sweep.py", [
        "--config-file", DEMO_CONFIG, "--grid", "optimizer.lr=[1e-3,1e-5]", "--launcher", "slurm",
        "--wait", "--out", str(sweep_dir), "--tasks-per-node", "1", "--cpus-per-task", "1",
        "--partition", os.environ.get("SLURM_LOCAL_PARTITION", "debug"), "--time-min", "10",
        "--job-name", "cosmos-test-sweep", *fixed], cwd=str(tmp_path))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    job_ids = [r["job_id"] for r in manifest["runs"]]
    array_id = job_ids[0].split("_")[0]
    assert job_ids == [f"{array_id}_0", f"{array_id}_1"]  # one array, two elements
    assert "2/2 runs done" in res.stdout
    lines = (sweep_dir / "sweep.md").read_text().splitlines()
    assert any(line.startswith("| lr=1e-3 | 1e-3 | done |") for line in lines)
    assert any(line.startswith("| lr=1e-5 | 1e-5 | done |") for line in lines)
    assert (sweep_dir / "sweep.png").stat().st_size > 10_000
