"""End-to-end training through tools/train_net.py: resume equality, kills, NaN guard, run dir."""
from __future__ import annotations

import json
import os

import pytest
import torch

from tests.helpers import DEMO_CONFIG, run_train, tiny_overrides

MAX_ITER = 6
pytestmark = pytest.mark.slow  # every test trains through the CLI (or reads such a run)


def _weights(run_dir: str) -> dict:
    return torch.load(os.path.join(run_dir, "student.pth"), weights_only=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, synthetic_shards) -> str:
    out = str(tmp_path_factory.mktemp("straight"))
    res = run_train(["--config-file", DEMO_CONFIG,
                     *tiny_overrides(out, synthetic_shards, MAX_ITER), "train.checkpoint_period=3"])
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_run_directory_layout(straight_run: str) -> None:
    for name in ("config.yaml", "config_source.py", "log.txt", "metrics.jsonl", "student.pth",
                 "checkpoints/last_checkpoint", "checkpoints/model_0000006.pth",
                 "eval/results.json", "eval/results.md"):
        assert os.path.exists(os.path.join(straight_run, name)), name
    assert os.listdir(os.path.join(straight_run, "tensorboard"))
    with open(os.path.join(straight_run, "checkpoints", "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000006.pth"
    lines = [json.loads(x) for x in open(os.path.join(straight_run, "metrics.jsonl"))]
    assert [x["iter"] for x in lines if "clip_loss" in x] == list(range(1, MAX_ITER + 1))
    assert all(0 < x["lr"] for x in lines if "lr" in x)
    results = json.load(open(os.path.join(straight_run, "eval", "results.json")))
    i2t_r1 = results["student/synthetic/retrieval/i2t_R@1"]
    assert results["iter"] == MAX_ITER and 0 <= i2t_r1 <= 100
    log = open(os.path.join(straight_run, "log.txt")).read()
    assert "pairs/s" in log and "eta" in log and f"step {MAX_ITER}/{MAX_ITER}" in log


def test_kill_and_resume_equals_straight_run(straight_run: str, tmp_path, synthetic_shards) -> None:
    out = str(tmp_path)
    args = ["--config-file", DEMO_CONFIG,
            *tiny_overrides(out, synthetic_shards, MAX_ITER), "train.checkpoint_period=3"]
    killed = run_train(args + ["train.hooks=[{_target_: tests.helpers.KillBeforeStep, step: 3}]"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(out, "student.pth"))
    assert os.path.exists(os.path.join(out, "checkpoints", "model_0000003.pth"))
    resumed = run_train(args)  # the same command again continues the run
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 3" in open(os.path.join(out, "log.txt")).read()
    _assert_same_weights(_weights(straight_run), _weights(out))


def test_resume_with_loader_workers_equals_straight_run(tmp_path, synthetic_shards) -> None:
    """Two shard-reading worker processes; the kill lands after an odd number of batches, so
    the resumed workers must take over each other's streams."""
    common = ["--config-file", DEMO_CONFIG, "train.checkpoint_period=3",
              "dataloader.train.num_workers=2"]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    res = run_train(common + tiny_overrides(straight, synthetic_shards, 5)
                    + ["dataloader.train.num_workers=2"])
    assert res.returncode == 0, res.stderr[-3000:]
    args = (common + tiny_overrides(resumed, synthetic_shards, 5)
            + ["dataloader.train.num_workers=2"])
    killed = run_train(args + ["train.hooks=[{_target_: tests.helpers.KillBeforeStep, step: 3}]"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert run_train(args).returncode == 0
    _assert_same_weights(_weights(straight), _weights(resumed))
    rows = [json.loads(x) for x in open(os.path.join(resumed, "metrics.jsonl"))]
    assert [r["data/samples"] for r in rows if "data/samples" in r][-1] == 5 * 4


def test_kill_during_save_resumes_from_previous_checkpoint(straight_run: str, tmp_path,
                                                           synthetic_shards) -> None:
    out = str(tmp_path)
    args = ["--config-file", DEMO_CONFIG,
            *tiny_overrides(out, synthetic_shards, MAX_ITER), "train.checkpoint_period=2"]
    killed = run_train(args + ["train.hooks=[{_target_: tests.helpers.KillDuringSave, step: 4}]"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    ckpt_dir = os.path.join(out, "checkpoints")
    assert open(os.path.join(ckpt_dir, "last_checkpoint")).read().strip() == "model_0000002.pth"
    assert not os.path.exists(os.path.join(ckpt_dir, "model_0000004.pth"))
    assert any(name.endswith(".tmp") for name in os.listdir(ckpt_dir))  # the torn write
    resumed = run_train(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 2" in open(os.path.join(out, "log.txt")).read()
    assert not any(name.endswith(".tmp") for name in os.listdir(ckpt_dir))
    _assert_same_weights(_weights(straight_run), _weights(out))


def test_nan_guard_names_step_and_term(tmp_path, synthetic_shards) -> None:
    out = str(tmp_path)
    res = run_train(["--config-file", DEMO_CONFIG, *tiny_overrides(out, synthetic_shards, 5),
                     "train.hooks=[{_target_: tests.helpers.ExplodeAtStep, step: 3}]"])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith(
        "error: step 3: loss term 'clip_loss' is nan")
    assert "Traceback" not in res.stderr


def test_no_resume_refuses_to_overwrite(straight_run: str, synthetic_shards) -> None:
    before = os.path.getmtime(os.path.join(straight_run, "checkpoints", "model_0000006.pth"))
    res = run_train(["--config-file", DEMO_CONFIG, "--no-resume",
                     *tiny_overrides(straight_run, synthetic_shards, MAX_ITER)])
    assert res.returncode == 2 and "already holds" in res.stderr
    last = os.path.join(straight_run, "checkpoints", "model_0000006.pth")
    assert os.path.getmtime(last) == before
