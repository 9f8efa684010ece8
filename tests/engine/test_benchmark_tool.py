"""Smoke test of tools/benchmark.py on CPU with the tiny tower shapes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO
BENCHMARK = os.path.join(REPO, "tools", "benchmark.py")


@pytest.mark.slow
def test_towers_smoke_on_cpu(tmp_path) -> None:
    out_json = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("COSMOS_ATTN_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, BENCHMARK, "towers", "--arch", "tiny", "--batch", "2", "--steps", "1",
         "--warmup", "0", "--backends", "sdpa,math,xformers", "--device", "cpu",
         "--json", str(out_json)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\| (vision|text) \| (\w+) \| ([\d.,]+) \|", proc.stdout, flags=re.M)
    assert {(tower, backend) for tower, backend, _ in rows} == {
        ("vision", "sdpa"), ("vision", "math"), ("text", "sdpa"), ("text", "math")}, proc.stdout
    assert all(float(ms.replace(",", "")) > 0 for _, _, ms in rows)
    # xformers has no CPU kernels, installed or not: a visible skip line with the reason
    skip = r"^- skipped xformers: .*(not installed|no kernels|disabled)"
    assert re.search(skip, proc.stdout, flags=re.M), proc.stdout
    results = json.loads(out_json.read_text())["results"]
    xformers = {(r["tower"], r["status"]) for r in results if r["backend"] == "xformers"}
    assert xformers == {("vision", "skipped"), ("text", "skipped")}
