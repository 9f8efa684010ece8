"""docs/own_data.md works as written: every ```bash block runs, in order, on a folder made here.

Substitutions only: the folder (``my_data``), the run directory (``runs/``), the interpreter
(``python``), and 300 steps → 2.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

from cosmos.data.synthetic import SyntheticScenes
from tests.helpers import REPO

DOC = os.path.join(REPO, "docs", "own_data.md")
NUM_TRAIN, NUM_HOLDOUT = 24, 8
pytestmark = pytest.mark.slow  # the page's commands make shards and train


def _blocks() -> List[str]:
    return re.findall(r"```bash\n(.*?)```", open(DOC, encoding="utf-8").read(), flags=re.S)


def _make_folder(root: str) -> None:
    """Images and captions as the page describes: a short title, a long multi-sentence one."""
    images = os.path.join(root, "images")
    os.makedirs(images)
    scenes = SyntheticScenes(num_samples=NUM_TRAIN + NUM_HOLDOUT, image_size=64, split="train")
    rows, holdout = [], []
    for i in range(NUM_TRAIN + NUM_HOLDOUT):
        item = scenes[i]
        name = f"{i:04d}.jpg"
        item["image"].save(os.path.join(images, name), quality=95)
        title = item["captions"]["long"][0]
        long_caption = " ".join(item["captions"]["long"])
        if i < NUM_TRAIN:
            rows.append({"filepath": name, "title": title, "long_caption": long_caption})
        else:
            holdout.append({"image": name, "caption": [title, long_caption]})
    with open(os.path.join(root, "captions.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["filepath", "title", "long_caption"])
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(root, "captions.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(root, "holdout.json"), "w") as f:
        json.dump(holdout, f)


def _prepare(block: str, folder: str, runs: str) -> str:
    block = block.replace("export OWN_DATA=my_data", f"export OWN_DATA={folder}")
    block = block.replace("runs/", f"{runs}/")
    block = block.replace("train.max_iter=300", "train.max_iter=2")
    block = block.replace("model_0000300", "model_0000002")
    block = re.sub(r"(^|\n)python ", rf"\1{sys.executable} ", block)
    return f"export OWN_DATA={folder}\n{block}"


def _run(script: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    env.pop("COSMOS_TRACEBACK", None)
    return subprocess.run(["bash", "-e", "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Tuple[str, str, Dict[str, subprocess.CompletedProcess]]:
    """Runs every block of the page except the export one (tested below); returns the folder,
    the runs directory and each block's result."""
    tmp = tmp_path_factory.mktemp("own_data")
    folder, runs = str(tmp / "my_data"), str(tmp / "runs")
    _make_folder(folder)
    results = {}
    for block in _blocks():
        if "tools/export.py" in block:
            continue
        res = _run(_prepare(block, folder, runs))
        assert res.returncode == 0, f"{block}\n--- stderr:\n{res.stderr[-3000:]}"
        results[block] = res
    return folder, runs, results


def test_every_command_of_the_page_runs(page) -> None:
    folder, runs, results = page
    assert len(results) >= 6 and any("tools/train_net.py" in b for b in results)
    index = json.load(open(os.path.join(folder, "shards", "train-index.json")))
    assert index["num_samples"] == NUM_TRAIN and index["shards"] == ["train-000000.tar"]
    assert json.load(open(os.path.join(folder, "shards", "fromjson-index.json")))[
        "num_samples"] == NUM_TRAIN
    listing = next(r.stdout for b, r in results.items() if b.startswith("export"))
    assert "000000000.jpg" in listing and "000000000.json" in listing
    for run in ("my_cosmos", "my_cosmos_short"):
        log = open(os.path.join(runs, run, "log.txt")).read()
        assert "step 2/2" in log
        result = json.load(open(os.path.join(runs, run, "eval", "results.json")))
        assert result["iter"] == 2
        recalls = [v for k, v in result.items() if "R@" in k]
        assert any("i2t_R@1" in k for k in result) and all(0 <= v <= 100 for v in recalls)
    evaluated = next(r for b, r in results.items() if "tools/eval_net.py" in b)
    assert "R@1" in evaluated.stdout + evaluated.stderr


def test_export_command_of_the_page(page) -> None:
    if not os.path.exists(os.path.join(REPO, "tools", "export.py")):
        pytest.skip("tools/export.py is not in this checkout yet: the export command of "
                    "docs/own_data.md was not run")
    folder, runs, _ = page
    block = next(b for b in _blocks() if "tools/export.py" in b)
    res = _run(_prepare(block, folder, runs))
    assert res.returncode == 0, res.stderr[-3000:]
    assert os.listdir(os.path.join(runs, "my_cosmos", "export"))
