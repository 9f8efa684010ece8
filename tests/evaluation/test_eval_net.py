"""tools/eval_net.py: a trained checkpoint evaluated per encoder, results written, clear errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, run_train

COSMOS_CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
TINY = ["model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
        "model.student.encoder.text.width=32", "model.student.encoder.text.layers=1",
        "evaluation.synthetic.dataset.num_samples=6",
        "evaluation.segmentation.dataset.num_samples=4",
        "dataloader.train.num_workers=0"]


def _eval_net(args):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    env.pop("COSMOS_TRACEBACK", None)
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "eval_net.py"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cosmos_run(tmp_path_factory, synthetic_shards) -> str:
    out = str(tmp_path_factory.mktemp("cosmos_run"))
    res = run_train(["--config-file", COSMOS_CONFIG, f"train.output_dir={out}", "train.max_iter=2",
                     f"dataloader.train.urls={synthetic_shards}", "dataloader.train.batch_size=2",
                     *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.slow
def test_evaluates_student_and_teacher_like_training_did(cosmos_run) -> None:
    ckpt = os.path.join(cosmos_run, "checkpoints", "model_0000002.pth")
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--checkpoint", ckpt, *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    out = os.path.join(cosmos_run, "eval_model_0000002")
    results = json.load(open(os.path.join(out, "results.json")))
    trained = json.load(open(os.path.join(cosmos_run, "eval", "results.json")))
    assert results == trained  # same weights, same evaluator → the same numbers
    assert {k.split("/")[0] for k in results if k != "iter"} == {"student", "teacher"}
    assert os.path.exists(os.path.join(out, "results.md"))
    assert "teacher/synthetic/classification/top1" in res.stdout
    assert 0 <= results["teacher/segmentation/mIoU"] <= 100


@pytest.mark.slow
def test_encoder_selection_and_errors(cosmos_run, tmp_path) -> None:
    ckpt = os.path.join(cosmos_run, "checkpoints", "model_0000002.pth")
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--checkpoint", ckpt, "--encoders", "teacher",
                     "--out", str(tmp_path / "t"), "--overlays", "2", *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    keys = json.load(open(tmp_path / "t" / "results.json"))
    assert all(k.startswith("teacher/") for k in keys if k != "iter")
    overlays = sorted((tmp_path / "t" / "overlays").rglob("*.png"))  # segmentation only, teacher
    assert [str(p.relative_to(tmp_path / "t" / "overlays")) for p in overlays] == [
        "teacher/segmentation/seg_000.png", "teacher/segmentation/seg_001.png"]
    pixels = np.asarray(Image.open(overlays[0]).convert("L"), dtype=np.float32)
    assert pixels.shape == (500, 1200) and pixels.std() > 5
    bad = _eval_net(["--config-file", COSMOS_CONFIG, "--checkpoint", ckpt, "--encoders", "tutor",
                     *TINY])
    assert bad.returncode == 2 and "unknown encoder(s) ['tutor']" in bad.stderr
    bad = _eval_net(["--config-file", COSMOS_CONFIG, "--checkpoint", ckpt, "--evaluators", "coco",
                     *TINY])
    assert bad.returncode == 2 and "unknown evaluator(s) ['coco']" in bad.stderr
    bad = _eval_net(["--config-file", COSMOS_CONFIG, "--checkpoint", str(tmp_path / "no.pth"),
                     *TINY])
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")


@pytest.mark.slow
def test_eval_config_brings_the_benchmark_evaluators(cosmos_run, tmp_path) -> None:
    """The paper benchmarks config plugs into eval_net; a missing data set is one clear line."""
    ckpt = os.path.join(cosmos_run, "checkpoints", "model_0000002.pth")
    bench = os.path.join(REPO, "configs", "common", "evaluation", "benchmarks.py")
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--checkpoint", ckpt, "--eval-config", bench,
                     "--evaluators", "coco", "evaluation.coco.root=" + str(tmp_path / "nococo"),
                     *TINY[:4]])
    assert res.returncode == 2, res.stderr[-2000:]
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "nococo" in line


def test_benchmark_config_names_registered_evaluators() -> None:
    from cosmos.config import LazyConfig
    from cosmos.registry import EVALUATORS, load_builtins

    load_builtins()
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "common", "evaluation", "benchmarks.py"))
    names = {node._target_.split(".", 1)[1] for node in cfg.evaluation.values()}
    assert names == {"retrieval", "zeroshot_classification", "zeroshot_segmentation"}
    assert all(n in EVALUATORS for n in names)
    assert len(cfg.evaluation) == 12


@pytest.mark.slow
def test_openclip_export_evaluates_like_the_run(cosmos_run, tmp_path) -> None:
    """A run's student exported to OpenCLIP and evaluated with --model openclip:DIR gives the
    numbers the run's own evaluation gave its student (same weights, same evaluators)."""
    exported = str(tmp_path / "openclip_student")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), cosmos_run,
                          "--out", exported], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--model", f"openclip:{exported}",
                     "--out", str(tmp_path / "eval"), *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.load(open(tmp_path / "eval" / "results.json"))
    trained = json.load(open(os.path.join(cosmos_run, "eval", "results.json")))
    student = {k[len("student/"):]: v for k, v in trained.items() if k.startswith("student/")}
    assert {k[len("openclip/"):]: v for k, v in results.items() if k != "iter"} == student


@pytest.mark.slow
def test_official_checkpoint_evaluates_student_and_teacher(tmp_path) -> None:
    import torch

    from cosmos.config import LazyConfig
    from cosmos.engine.defaults import build_evaluators, evaluate
    from cosmos.engine.pretrained import Baseline
    from cosmos.models import build_cosmos_student, to_official_cosmos

    torch.manual_seed(0)
    student, teacher = build_cosmos_student("tiny-16"), build_cosmos_student("tiny-16")
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "student": {f"module.{k}": v for k, v in
                                        to_official_cosmos(student).items()},
                "teacher": to_official_cosmos(teacher)}, path)
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--model", f"official:{path}", "--arch",
                     "tiny-16", "--evaluators", "synthetic", *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.load(open(tmp_path / "eval_epoch_1" / "results.json"))
    cfg = LazyConfig.apply_overrides(LazyConfig.load(COSMOS_CONFIG), TINY)
    expected = evaluate(Baseline({"student": student.encoder.eval(),
                                  "teacher": teacher.encoder.eval()}),
                        {"synthetic": build_evaluators(cfg)["synthetic"]})
    assert {k: v for k, v in results.items() if k != "iter"} == pytest.approx(expected, abs=1e-6)
    assert {k.split("/")[0] for k in expected} == {"student", "teacher"}


def test_unknown_model_scheme_is_one_line(tmp_path) -> None:
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--model", f"hf:{tmp_path}/x",
                     "--out", str(tmp_path / "never"), *TINY])
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: unknown scheme 'hf' in --model=hf:{tmp_path}/x; "
                                  "known: openclip:PATH, official:PATH")
    assert not (tmp_path / "never").exists()
    res = _eval_net(["--config-file", COSMOS_CONFIG, "--model", f"openclip:{tmp_path}/w.bin",
                     *TINY])
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"{tmp_path}/w.bin" in res.stderr
