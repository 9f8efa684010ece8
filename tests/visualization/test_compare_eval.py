"""Evaluation curves of several runs, grouped over seeds (mean ± std), and the CLI option."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cosmos.utils.errors import CosmosError
from cosmos.visualization.curves import compare_eval, mean_std_series, seed_group
from tests.helpers import REPO


def _run(root, name, evals):
    """A run directory with one loss row and ``{step: {metric: value}}`` evaluation files."""
    run = os.path.join(root, name)
    os.makedirs(os.path.join(run, "eval"))
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"iter": 1, "loss": 1.0}) + "\n")
    for step, metrics in evals.items():
        with open(os.path.join(run, "eval", f"results_{step:07d}.json"), "w") as f:
            json.dump({"iter": step, **metrics}, f)
    return run


def test_seed_group_drops_only_the_seed_pair():
    assert seed_group("config=clip_tiny,seed=2") == "config=clip_tiny"
    assert seed_group("config=a,train.seed=0,lr=1") == "config=a,lr=1"
    assert seed_group("seedling=3") == "seedling=3"
    assert seed_group("run7") == "run7"


def test_mean_std_over_the_shared_steps():
    steps, mean, std = mean_std_series([([0, 10, 20], [1.0, 2.0, 4.0]),
                                        ([10, 20], [4.0, 8.0])])
    assert steps == [10, 20]
    assert mean == [3.0, 6.0]
    assert std == pytest.approx([np.sqrt(2.0), np.sqrt(8.0)])  # sample std of (2,4), (4,8)
    assert mean_std_series([([5], [0.5])]) == ([5], [0.5], [0.0])


def test_compare_eval_writes_a_figure_and_rejects_no_match(tmp_path):
    runs = [_run(tmp_path, f"config=x,seed={s}",
                 {10: {"student/hn/mean": 50.0 + s, "student/hn/mean_chance": 50.0},
                  20: {"student/hn/mean": 60.0 + s}}) for s in range(2)]
    out = compare_eval({"config=x": runs}, ["student/hn/*"], str(tmp_path / "c.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CosmosError, match="no evaluation metric matches"):
        compare_eval({"config=x": runs}, ["teacher/*"], str(tmp_path / "d.png"))


@pytest.mark.slow
def test_plot_curves_cli_groups_seeds(tmp_path):
    runs = [_run(tmp_path, f"config=a,seed={s}", {10: {"student/hn/mean": float(s)}})
            for s in range(2)]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_curves.py"), *runs,
                           "--eval-metrics", "student/hn/*", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(tmp_path / "p" / "compare_eval.png")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_curves.py"), *runs,
                           "--eval-metrics", "nothing/*", "--out", str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no evaluation metric matches nothing/*" in proc.stderr
