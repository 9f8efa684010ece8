"""tools/sweep.py without SLURM: grid parsing, run names, runs one after another, and the
collected table, CSV and plot (the SLURM job-array path is in tests/test_slurm.py)."""
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
    assert points[0] == {"optimizer.lr": "1e-3", "model.x": "[1,2]", "train.seed": "7", "a.b": "'x,y'"}
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
