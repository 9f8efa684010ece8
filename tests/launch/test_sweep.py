"""tools/sweep.py without SLURM: grid parsing, run names, runs one after another, and the
collected table, CSV and plot (the SLURM job-array path is in tests/launch/test_slurm.py)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from cosmos.launch import sweep as S
from cosmos.utils.errors import CosmosError
from tests.helpers import DEMO_CONFIG, REPO, tiny_overrides


def test_grid_parsing_and_expansion() -> None:
    grid = S.parse_grid(["optimizer.lr=[1e-3,5e-4]", "model.x=[[1,2],[3]]", "train.seed=7",
                         "a.b=['x,y',z]"])
    assert grid == [("optimizer.lr", ["1e-3", "5e-4"]), ("model.x", ["[1,2]", "[3]"]),
                    ("train.seed", ["7"]), ("a.b", ["'x,y'", "z"])]
    points = S.expand(grid)
    assert len(points) == 2 * 2 * 1 * 2
    assert points[0] == {"optimizer.lr": "1e-3", "model.x": "[1,2]", "train.seed": "7",
                         "a.b": "'x,y'"}
    assert points[-1]["optimizer.lr"] == "5e-4" and points[-1]["a.b"] == "z"  # first axis slowest
    assert S.run_name({"model.distill_loss._target_": "losses.siglip", "optimizer.lr": "1e-3"}) == \
        "distill_loss=losses.siglip,lr=1e-3"


@pytest.mark.parametrize("spec, message", [("optimizer.lr", "expected KEY=[v1,v2,...]"),
                                           ("optimizer.lr=[]", "the value list is empty")])
def test_bad_grid_is_a_one_line_error(spec, message) -> None:
    with pytest.raises(CosmosError, match=message.replace("[", r"\[").replace(".", r"\.")):
        S.parse_grid([spec])
    with pytest.raises(CosmosError, match="twice"):
        S.parse_grid(["a=[1,2]", "a=[3]"])


@pytest.mark.slow
def test_local_sweep_runs_the_grid_and_collects_a_table(tmp_path, synthetic_shards) -> None:
    sweep_dir = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    fixed = [o for o in tiny_overrides(str(tmp_path / "unused"), synthetic_shards, max_iter=2)
             if not o.startswith("train.output_dir")]
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "sweep.py"), "--config-file",
                          DEMO_CONFIG, "--grid", "optimizer.lr=[1e-3,1e-5]", "--launcher", "local",
                          "--out", str(sweep_dir), *fixed],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2/2 runs done" in res.stdout
    for name in ("lr=1e-3", "lr=1e-5"):
        assert (sweep_dir / name / "eval" / "results.json").is_file()
        config = OmegaConf.load(sweep_dir / name / "config.yaml")
        assert config.optimizer.lr == float(name[3:])
    with open(sweep_dir / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["optimizer.lr"] for r in rows] == ["1e-3", "1e-5"]
    assert all(r["status"] == "done" for r in rows)
    results = json.loads((sweep_dir / "lr=1e-5" / "eval" / "results.json").read_text())
    key = "student/segmentation/mIoU"
    assert float(rows[1][key]) == pytest.approx(results[key], rel=1e-3)
    assert float(rows[0]["loss"]) != float(rows[1]["loss"])  # the override took effect
    table = (sweep_dir / "sweep.md").read_text()
    assert table.count("\n| lr=") == 2 and key in table
    image = np.asarray(Image.open(sweep_dir / "sweep.png").convert("L"), dtype=np.float32)
    assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 10  # not blank

    again = subprocess.run([sys.executable, os.path.join(REPO, "tools", "sweep.py"), "--collect",
                            str(sweep_dir), "--metrics", "loss"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.splitlines()[0] == "| run | optimizer.lr | status | loss |"


def _fake_run(sweep_dir, name: str, overrides, metrics=None) -> S.SweepRun:
    """A run directory holding only a final eval/results.json (or nothing)."""
    run = S.SweepRun(name, dict(overrides), str(sweep_dir / name))
    if metrics is not None:
        os.makedirs(os.path.join(run.output_dir, "eval"))
        with open(os.path.join(run.output_dir, "eval", "results.json"), "w") as f:
            json.dump({"iter": 2, **metrics}, f)
    return run


def test_failed_runs_keep_their_reason_and_seeds_give_mean_and_std(tmp_path) -> None:
    runs = [_fake_run(tmp_path, f"a{seed}", {"config": "cfg/a.py", "train.seed": str(seed)},
                      {"student/x/top1": value}) for seed, value in ((0, 1.0), (1, 2.0), (2, 3.0))]
    runs.append(_fake_run(tmp_path, "b0", {"config": "cfg/b.py", "train.seed": "0"},
                          {"student/x/top1": 5.0}))
    broken = _fake_run(tmp_path, "b1", {"config": "cfg/b.py", "train.seed": "1"})
    broken.fail("Traceback (most recent call last):\n  ...\nerror: bad | value in run b1\n")
    runs.append(broken)
    assert S.seed_keys(runs) == ["train.seed"]
    text, columns = S.collect(str(tmp_path), runs, ["*top1"])
    assert columns == ["student/x/top1"]
    assert broken.status == "failed" and broken.status_cell() == "failed: bad | value in run b1"
    md = (tmp_path / "sweep.md").read_text()
    assert "| b1 | cfg/b.py | 1 | failed: bad \\| value in run b1 |  |" in md   # one line, escaped
    with open(tmp_path / "sweep.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done"] * 4 + [
            "failed: bad | value in run b1"]
    # a: 1, 2, 3 → mean 2, sample std 1; b: one done run of two → its value, no std
    assert "## Mean ± std over train.seed" in md
    assert "| cfg/a.py | 3/3 | 2 ± 1 |" in md and "| cfg/b.py | 1/2 | 5 |" in md
    with open(tmp_path / "sweep_mean.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["config"], r["done"], r["runs"]) for r in rows] == [("cfg/a.py", "3", "3"),
                                                                   ("cfg/b.py", "1", "2")]
    assert float(rows[0]["student/x/top1 mean"]) == 2.0
    assert float(rows[0]["student/x/top1 std"]) == 1.0 and rows[1]["student/x/top1 std"] == ""
    with open(tmp_path / "sweep_mean.png", "rb") as f:  # the seed groups as bars ± std
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert S._group_label(["cfg/a.py", "1e-3"]) == "a, 1e-3"
    squares = (1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2
    assert S.mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, (squares / 2) ** 0.5))
    # without a varying seed there is no mean table
    S.collect(str(tmp_path), runs[:1], ["*top1"])
    assert "Mean" not in (tmp_path / "sweep.md").read_text()


def test_config_axis_names_runs_and_points_that_do_not_load_are_recorded() -> None:
    points = S.expand(S.parse_grid(["config=[configs/clip/clip_tiny_synthetic.py,x/bad.py]",
                                    "train.seed=[0,1]"]))
    runs = S.plan(points, "/sweep")
    assert [r.name for r in runs] == ["config=clip_tiny_synthetic,seed=0",
                                      "config=clip_tiny_synthetic,seed=1",
                                      "config=bad,seed=0", "config=bad,seed=1"]
    assert runs[0].config_file("") == "configs/clip/clip_tiny_synthetic.py"
    assert runs[0].config_overrides() == ["train.seed=0"]
    loaded = []

    def load(config, overrides):
        if config.endswith("bad.py"):
            raise CosmosError(f"config file not found: {config}")
        loaded.append((config, overrides))
    assert S.check_runs(runs, "", ["train.max_iter=2"], load) == runs[:2]
    assert loaded == [("configs/clip/clip_tiny_synthetic.py", ["train.max_iter=2", "train.seed=0"]),
                      ("configs/clip/clip_tiny_synthetic.py", ["train.max_iter=2", "train.seed=1"])]
    assert [r.status_cell() for r in runs[2:]] == ["failed: config file not found: x/bad.py"] * 2
    with pytest.raises(CosmosError, match="config file not found"):  # nothing would run
        S.check_runs(runs[2:], "", [], load)
    metrics = {"s/hard_negatives/small_color": 1.0, "s/hard_negatives/small_color_chance": 50.0,
               "s/hard_negatives/mean": 2.0, "loss": 3.0, "s/seg/mIoU": 4.0}
    assert S.select(metrics, ["*hard_negatives/*", "!*_chance", "loss"]) == [
        "s/hard_negatives/mean", "s/hard_negatives/small_color", "loss"]
    assert S.select(metrics, S.DEFAULT_METRICS) == ["s/seg/mIoU", "s/hard_negatives/mean", "loss"]
    assert S.one_line("x" * 500).endswith("…") and len(S.one_line("x" * 500)) == S.MAX_ERROR_CHARS


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, synthetic_shards) -> None:
    """A grid over config files x shard lists x seeds: points whose config does not load and
    runs that fail at start (no shards) are recorded with their one-line reason; the good runs
    after them still train, and the table gives mean ± std over the seeds."""
    sweep_dir = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    fixed = [o for o in tiny_overrides(str(tmp_path / "unused"), synthetic_shards, max_iter=2)
             if not o.startswith(("train.output_dir", "dataloader.train.urls"))]
    missing, bad = tmp_path / "missing.py", tmp_path / "none-{0..1}.tar"
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "sweep.py"),
                          "--grid", f"config=[{missing},{DEMO_CONFIG}]",
                          "--grid", f"dataloader.train.urls=[{bad},{synthetic_shards}]",
                          "--grid", "train.seed=[0,1]", "--launcher", "local",
                          "--out", str(sweep_dir), *fixed],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stderr[-2000:]   # some runs failed
    assert "2/8 runs done" in res.stdout
    with open(sweep_dir / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    status = [r["status"] for r in rows]
    assert status[:4] == [f"failed: config file not found: {missing}"] * 4
    assert all(s.startswith("failed: ") and "none of the 2 shards exists" in s
               for s in status[4:6]), status
    assert status[6:] == ["done", "done"]
    assert not os.path.exists(sweep_dir / rows[0]["run"])          # never started
    good = [r for r in rows if r["status"] == "done"]
    assert float(good[0]["loss"]) != float(good[1]["loss"])       # the seed took effect
    md = (sweep_dir / "sweep.md").read_text()
    assert "## Mean ± std over train.seed" in md
    with open(sweep_dir / "sweep_mean.csv") as f:
        means = list(csv.DictReader(f))
    assert [m["done"] for m in means] == ["0", "0", "0", "2"]
    losses = [float(r["loss"]) for r in good]                    # 4 significant digits
    assert float(means[3]["loss mean"]) == pytest.approx(sum(losses) / 2, abs=1e-3)
    assert float(means[3]["loss std"]) == pytest.approx(abs(losses[0] - losses[1]) / 2 ** 0.5,
                                                        abs=1e-3)
