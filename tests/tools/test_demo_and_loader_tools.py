"""Smoke runs of tools/demo.py (both methods, comparison table and plot) and
tools/benchmark_loader.py, with one step / one batch on the test shards."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO


def _run(args, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_demo_trains_both_and_compares(tmp_path, synthetic_shards) -> None:
    out = tmp_path / "demo"
    res = _run(["tools/demo.py", "--out", str(out), "--steps", "1", "--batch-size", "2",
                f"dataloader.train.urls={synthetic_shards}", "dataloader.train.num_workers=0",
                "evaluation.synthetic.dataset.num_samples=6",
                "evaluation.segmentation.dataset.num_samples=4", "train.checkpoint_period=1"])
    assert res.returncode == 0, res.stderr[-3000:]
    table = (out / "comparison.md").read_text()
    assert "Held-out synthetic scenes (6)" in table
    rows = re.findall(r"^\| ([a-z].*?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]*) \|$",
                      table, flags=re.M)
    labels = [r[0] for r in rows]
    assert labels[:3] == ["hard negative: small-object colour", "hard negative: small-object shape",
                          "hard negative: small-object position"]       # fine-grained first
    assert labels[-5:] == ["full caption i2t R@1", "full caption t2i R@1",
                           "small-object sentence t2i R@10", "shape classification top-1",
                           "segmentation mIoU"]                          # the first demo's rows
    row = dict(zip(labels, rows))
    clip = json.loads((out / "clip" / "eval" / "results.json").read_text())
    assert float(row["full caption i2t R@1"][1]) == \
        round(clip["student/synthetic/retrieval/i2t_R@1"], 1)
    assert float(row["hard negative: small-object colour"][1]) == \
        round(clip["student/hard_negatives/small_color"], 1)
    cosmos = json.loads((out / "cosmos" / "eval" / "results.json").read_text())
    assert float(row["shape classification top-1"][3]) == \
        round(cosmos["teacher/synthetic/classification/top1"], 1)
    assert float(row["segmentation IoU: small objects"][2]) == \
        round(cosmos["student/segmentation/small/mIoU"], 1)
    # chance: 1 of 2 captions; R@1 of one correct scene among 6; none for mIoU
    assert row["hard negative: background colour"][4] == "50.0"
    assert row["full caption t2i R@1"][4] == "16.7" and row["segmentation mIoU"][4] == ""
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    _check_report(out)


def _check_report(out) -> None:
    """report.md: the table, and every picture it links exists and is a non-blank PNG."""
    report = (out / "report.md").read_text()
    assert "| metric | cosmos | clip | chance |" in report
    assert "student/segmentation/mIoU" in report
    lines = report.splitlines()
    first = lines[lines.index("| metric | cosmos | clip | chance |") + 2]
    assert first.startswith("| student/hard_negatives/")                 # fine-grained first
    assert "| student/hard_negatives/background |" in report and "_chance |" not in report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    kinds = {"comparison.png", "compare_losses.png", "losses.png", "attention", "seg_"}
    assert all(any(k in link for link in links) for k in kinds), links
    assert sum("attention/cosmos/" in link for link in links) == 3  # three held-out scenes
    for link in links:
        image = np.asarray(Image.open(out / link).convert("L"), dtype=np.float32)
        assert image.shape[0] >= 200 and image.shape[1] >= 400, link
        assert image.std() > 5, f"{link} looks blank"
    attention_file = next((out / "report" / "attention" / "cosmos").glob("*.json"))
    attention = json.loads(attention_file.read_text())
    assert attention["source"].startswith("cross") and max(map(max, attention["patches"])) == 1.0


def test_demo_without_shards_says_how_to_make_them(tmp_path) -> None:
    res = _run(["tools/demo.py", "--out", str(tmp_path / "d"),
                "dataloader.train.urls=" + str(tmp_path / "none-{0..1}.tar")])
    assert res.returncode != 0
    assert "none of the 2 shards exists" in res.stdout + res.stderr


@pytest.mark.slow
def test_loader_benchmark_smoke(tmp_path, synthetic_shards) -> None:
    out_json = tmp_path / "loader.json"
    res = _run(["tools/benchmark_loader.py", "--shards", synthetic_shards, "--workers", "0",
                "--sizes", "64", "--samples", "2", "--batch", "2", "--batches", "1",
                "--warmup", "0", "--out", str(out_json)])
    assert res.returncode == 0, res.stderr[-3000:]
    for pipeline in ("official", "today", "fast \\(photometric on the GPU\\)",
                     "fast, photometric on this CPU",
                     "fast, resize_on_device \\(resize \\+ photometric on the GPU\\)",
                     "fast, resize_on_device, batch step on this CPU"):
        assert re.search(rf"^\| 64 \| {pipeline} \|( [\d.]+ \|){{7}}", res.stdout, flags=re.M)
    assert re.search(r"^\| fast \| 0 \(in process\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$",
                     res.stdout, flags=re.M)
    data = json.loads(out_json.read_text())
    stages = {r["pipeline"]: r for r in data["stages"]}
    assert set(stages) == {"official", "today", "fast", "fast_device"}
    assert stages["today"]["vs_today"] == 1.0
    for name in ("fast", "fast_device"):
        fast = stages[name]
        assert fast["ms_per_sample"] == pytest.approx(
            sum(fast["ms"].values()) - fast["ms"]["photometric"])
        assert fast["ms_per_sample_with_cpu_step"] == pytest.approx(sum(fast["ms"].values()))
    rows = data["loader"]
    assert [(r["pipeline"], r["workers"]) for r in rows] == [
        ("today", 0), ("fast", 0), ("fast_device", 0)]
    assert all(r["pairs_per_s"] > 0 for r in rows)
    assert rows[1]["pairs_per_s_with_cpu_step"] > 0 and rows[2]["pairs_per_s_with_cpu_step"] > 0
