"""Bad-input battery through the real CLI (tools/train_net.py in a subprocess): each case exits 2
with one ``error:`` line and no traceback, and the run directory keeps what it should (hashed
before and after). The run-directory lock is tested here too."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from cosmos.engine.run_lock import RunDirectoryBusy, RunLock, slurm_job_running
from tests.helpers import DEMO_CONFIG, REPO, TRAIN_NET, run_train, tiny_overrides


def _one_line(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [x for x in res.stderr.strip().splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == lines[0]
    return lines[0]


def _hashes(run_dir: str, skip=("log.txt",)) -> dict:
    """{relative path: sha256} of every file (``skip``: files a refused run may append to)."""
    out = {}
    for root, _, files in os.walk(run_dir):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, run_dir)
            if rel not in skip:
                out[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def _args(out: str, shards: str, max_iter: int = 2, *extra: str) -> list:
    return ["--config-file", DEMO_CONFIG, *tiny_overrides(out, shards, max_iter), *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_shards) -> str:
    """A finished 2-step run (checkpoint, eval/results.json, config.yaml); tests copy it."""
    out = str(tmp_path_factory.mktemp("finished") / "run")
    res = run_train(_args(out, synthetic_shards))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> str:
    out = str(tmp_path / "run")
    shutil.copytree(finished_run, out)
    return out


@pytest.mark.parametrize("override,message", [
    ("train.max_iter=abc", "error: override train.max_iter=abc: 'train.max_iter' takes an int, "
                           "got a string 'abc'; give e.g. train.max_iter=2"),
    ("optimizer.lr=abc", "error: override optimizer.lr=abc: 'optimizer.lr' takes a number, got "
                         "a string 'abc'; give e.g. optimizer.lr=0.001"),
    ("train.max_iter=2.5", "'train.max_iter' takes an int, got a number 2.5"),
    ("optimizer.betas=[0.9]", "'optimizer.betas' takes a list of 2 (a number, a number)"),
])
@pytest.mark.slow
def test_wrong_type_changes_nothing(run_copy, synthetic_shards, override, message) -> None:
    before = _hashes(run_copy, skip=())
    line = _one_line(run_train(_args(run_copy, synthetic_shards, 2, override)))
    assert line.startswith(message) or message in line, line
    assert _hashes(run_copy, skip=()) == before  # not even log.txt: refused before any write


@pytest.mark.slow
def test_unknown_component_keeps_the_runs_config(run_copy, synthetic_shards) -> None:
    before = _hashes(run_copy)
    line = _one_line(run_train(_args(run_copy, synthetic_shards, 4,
                                     "model.loss._target_=losses.clip_infonc")))
    assert line.startswith("error: model.loss: unknown losses 'clip_infonc'")
    assert _hashes(run_copy) == before  # config.yaml not rotated, the broken one not written
    assert not os.path.exists(os.path.join(run_copy, "config.yaml.1"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torch", "oserror"])
def test_disk_full_during_a_save(tmp_path, synthetic_shards, kind) -> None:
    out = str(tmp_path / "run")
    hook = f"train.hooks=[{{_target_: tests.helpers.DiskFullAtSave, step: 2, kind: {kind}}}]"
    line = _one_line(run_train(_args(out, synthetic_shards, 3, "train.checkpoint_period=1", hook)))
    ckpt_dir = os.path.join(out, "checkpoints")
    assert line.startswith(f"error: cannot write {ckpt_dir}/model_0000002.pth: "), line
    assert "GiB free on" in line and "model_0000001.pth is intact" in line
    if kind == "oserror":
        assert "No space left on device" in line
    assert sorted(os.listdir(ckpt_dir)) == ["last_checkpoint", "model_0000001.pth"]
    assert open(os.path.join(ckpt_dir, "last_checkpoint")).read().strip() == "model_0000001.pth"
    torch.load(os.path.join(ckpt_dir, "model_0000001.pth"), weights_only=True)  # intact


def test_eval_only_without_checkpoint_refuses(tmp_path, synthetic_shards) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    before = _hashes(str(out))
    line = _one_line(run_train(["--eval-only"] + _args(str(out), synthetic_shards)))
    assert line == (f"error: --eval-only: {out / 'checkpoints'} holds no checkpoint to evaluate; "
                    "train first, give --checkpoint PATH, or --checkpoint init to evaluate the "
                    "initial weights")
    assert _hashes(str(out)) == before and not (out / "eval").exists()


@pytest.mark.slow
def test_eval_only_of_initial_weights_on_request(tmp_path, synthetic_shards) -> None:
    out = str(tmp_path / "run")
    res = run_train(["--eval-only", "--checkpoint", "init"] + _args(out, synthetic_shards))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "evaluating the initial weights (fresh initialisation, seed 0)" in res.stdout
    results = json.load(open(os.path.join(out, "eval", "results_0000000.json")))
    assert results["iter"] == 0 and not os.path.exists(os.path.join(out, "eval", "results.json"))


@pytest.mark.slow
def test_eval_only_names_its_checkpoint_and_keeps_training_results(run_copy,
                                                                   synthetic_shards) -> None:
    before = _hashes(run_copy)
    res = run_train(["--eval-only"] + _args(run_copy, synthetic_shards))
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = os.path.join(run_copy, "checkpoints", "model_0000002.pth")
    assert f"evaluating checkpoint {ckpt} (step 2)" in res.stdout
    after = _hashes(run_copy)
    new = {k for k in after if k not in before}
    assert new == {"eval/results_0000002.md"}  # results_0000002.json: the same step's results
    for name in ("eval/results.json", "eval/results.md", "config.yaml"):
        assert after[name] == before[name], name
    assert json.load(open(os.path.join(run_copy, "eval", "results_0000002.json")))["iter"] == 2


@pytest.mark.slow
def test_nan_stop_saves_the_last_good_step(tmp_path, synthetic_shards) -> None:
    out = str(tmp_path / "run")
    res = run_train(_args(out, synthetic_shards, 5, "train.checkpoint_period=10",
                          "train.hooks=[{_target_: tests.helpers.ExplodeAtStep, step: 3}]"))
    line = _one_line(res)
    ckpt = os.path.join(out, "checkpoints", "model_0000002.pth")
    assert line == (f"error: step 3: loss term 'clip_loss' is nan; stopping before the optimizer "
                    f"step of step 3; the weights of step 2 are saved in {ckpt}; running "
                    "again resumes from there (lower optimizer.lr or set train.grad_clip first)")
    assert torch.load(ckpt, weights_only=True)["iter"] == 2
    progress = [x for x in res.stdout.splitlines() if "step " in x and "/5 (" in x]
    assert [x.split("step ")[1].split("/")[0] for x in progress] == ["1", "2"]  # no "step 3"


@pytest.mark.slow
def test_nan_found_at_a_later_sync_step_saves_nothing(tmp_path, synthetic_shards) -> None:
    """With train.log_period=4 the guard reads its device record at step 4 only: the weights
    after the bad step 2 are not finite, so nothing is saved and the line says so."""
    out = str(tmp_path / "run")
    line = _one_line(run_train(_args(out, synthetic_shards, 6, "train.log_period=4",
                                     "train.checkpoint_period=10", "train.hooks=[{_target_: "
                                     "tests.helpers.ExplodeAtStep, step: 2}]")))
    assert line == ("error: step 2: loss term 'clip_loss' is nan; stopping before the optimizer "
                    "step of step 4 (found at step 4: weights since step 2 are not finite; resume "
                    "from the last checkpoint); nothing was saved, the weights are no longer "
                    "finite (set train.log_period=1 to check every step)")
    assert not os.listdir(os.path.join(out, "checkpoints"))


@pytest.mark.slow
def test_nan_at_the_first_step_says_nothing_was_saved(tmp_path, synthetic_shards) -> None:
    out = str(tmp_path / "run")
    line = _one_line(run_train(_args(out, synthetic_shards, 3, "train.hooks=[{_target_: "
                                     "tests.helpers.ExplodeAtStep, step: 1}]")))
    assert line.endswith("; no step completed, so no checkpoint was saved")
    assert not os.listdir(os.path.join(out, "checkpoints"))


@pytest.mark.slow
def test_pickled_checkpoint_refusal_keeps_torchs_reason(tmp_path, synthetic_shards) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "extra": socket.getfqdn}, evil)  # a pickled function reference
    line = _one_line(run_train(_args(str(tmp_path / "run"), synthetic_shards, 2,
                                     f"train.init_checkpoint={evil}")))
    assert line.startswith(f"error: cannot read checkpoint {evil}: it holds a pickled Python "
                           "object that loading with weights_only=True refuses (Unsupported "
                           "global: GLOBAL socket.getfqdn was not an allowed global by default)")
    assert "weights_only` set to `False`" not in line and line.endswith("(a state dict)")


# ------------------------------------------------------------------------------------------
# one writer per run directory


@pytest.mark.slow
def test_second_writer_is_refused_while_the_first_holds_the_lock(run_copy,
                                                                 synthetic_shards) -> None:
    holder = RunLock(run_copy)
    holder.acquire()  # this test process plays the first writer
    try:
        before = _hashes(run_copy, skip=())
        line = _one_line(run_train(_args(run_copy, synthetic_shards, 3)))
        assert line.startswith(f"error: run directory {run_copy} is in use by pid {os.getpid()} "
                               f"on {socket.gethostname()}")
        assert _hashes(run_copy, skip=()) == before
    finally:
        holder.release()
    res = run_train(_args(run_copy, synthetic_shards, 3))  # released: the run continues
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed at step 2" in res.stdout


@pytest.mark.slow
def test_a_killed_holder_does_not_keep_the_directory(run_copy, synthetic_shards) -> None:
    """The first writer is kill -9'ed holding the lock: its file still names it, its flock is
    gone with it; the next run takes over."""
    res = run_train(_args(run_copy, synthetic_shards, 4, "train.checkpoint_period=1",
                          "train.hooks=[{_target_: tests.helpers.KillBeforeStep, step: 3}]"))
    assert res.returncode == -9
    assert json.load(open(os.path.join(run_copy, ".lock")))["host"] == socket.gethostname()
    res = run_train(_args(run_copy, synthetic_shards, 4, "train.checkpoint_period=1"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed at step 3" in res.stdout and "no longer running" in res.stdout
    assert open(os.path.join(run_copy, ".lock")).read() == ""  # released at the end


def _lock_file(directory, **info) -> None:
    base = {"host": "other-node", "pid": 12345, "slurm_job_id": None, "since": "earlier"}
    (directory / ".lock").write_text(json.dumps({**base, **info}) + "\n")


def _fake_squeue(tmp_path, monkeypatch, states: dict) -> None:
    """A ``squeue`` on PATH that knows the jobs in ``states`` ({job id: state})."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    cases = "".join(f'  {job}) echo {state}; exit 0;;\n' for job, state in states.items())
    script.write_text("#!/bin/sh\n# squeue -h -j ID -o %T\ncase \"$3\" in\n" + cases +
                      "  *) echo 'slurm_load_jobs error: Invalid job id specified' >&2; "
                      "exit 1;;\nesac\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_lock_of_a_finished_slurm_job_on_another_node_is_taken_over(tmp_path,
                                                                    monkeypatch) -> None:
    _fake_squeue(tmp_path, monkeypatch, {"111": "RUNNING"})
    assert slurm_job_running("111") is True and slurm_job_running("222") is False
    _lock_file(tmp_path, slurm_job_id="222")  # that job is gone
    lock = RunLock(str(tmp_path))
    lock.acquire()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    _lock_file(tmp_path, slurm_job_id="111")  # still running on its node
    with pytest.raises(RunDirectoryBusy, match="in use by pid 12345 on other-node "
                                               r"\(SLURM job 111\) since earlier"):
        RunLock(str(tmp_path)).acquire()


def test_requeued_slurm_job_is_the_same_owner(tmp_path, monkeypatch) -> None:
    _fake_squeue(tmp_path, monkeypatch, {"777": "RUNNING"})
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    _lock_file(tmp_path, slurm_job_id="777")  # our own job's earlier run (before the requeue)
    lock = RunLock(str(tmp_path))
    lock.acquire()
    lock.release()
    first = RunLock(str(tmp_path))
    first.acquire()  # our earlier run still stopping on this node: wait a little, then refuse
    try:
        with pytest.raises(RunDirectoryBusy):
            RunLock(str(tmp_path), same_job_wait_s=0.2).acquire()
    finally:
        first.release()


def test_same_host_dead_pid_without_flock_support_is_taken_over(tmp_path, monkeypatch) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    _lock_file(tmp_path, host=socket.gethostname(), pid=int(dead))
    lock = RunLock(str(tmp_path))
    monkeypatch.setattr(RunLock, "_try_flock", lambda self, fd: None)  # e.g. an NFS without locks
    lock.acquire()
    lock.release()
    _lock_file(tmp_path, host=socket.gethostname(), pid=os.getpid())  # alive
    with pytest.raises(RunDirectoryBusy):
        RunLock(str(tmp_path)).acquire()


def test_tools_are_run_the_way_the_readme_says() -> None:
    """The README's commands call the venv's python (a fresh shell has no torch elsewhere)."""
    readme = open(os.path.join(REPO, "README.md")).read()
    assert "python tools/" not in readme.replace(".venv/bin/python tools/", "")
    assert os.path.exists(TRAIN_NET)
