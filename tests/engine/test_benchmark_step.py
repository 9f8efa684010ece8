"""``tools/benchmark.py step`` on CPU with tiny configs, and the FLOP counter against hand counts.

FLOPs here count a multiply-add as 2 FLOPs (matmul (M, K) @ (K, N) = 2·M·N·K), as
cosmos.engine.benchmark.flops does.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import List

import pytest
import torch

from cosmos.config import LazyConfig
from cosmos.engine.benchmark.batches import random_batch, template_batch
from cosmos.engine.benchmark.flops import forward_flops
from cosmos.engine.benchmark.step_timer import (
    BACKWARD, EMA, LOSS, OPTIMIZER, OTHER, STUDENT, TEACHER)
from cosmos.models import TextTransformer, VisionTransformer

from tests.helpers import REPO
CLIP_CONFIG = os.path.join(REPO, "configs", "clip", "clip_tiny_synthetic.py")
COSMOS_CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")

_TOWERS = dict(width=32, layers=1, heads=2, output_dim=16)
_VISION = dict(_TOWERS, image_size=32, patch_size=16)
_TEXT = dict(_TOWERS, context_length=32)


def _overrides(prefix: str) -> List[str]:
    out = [f"{prefix}.visual.{k}={v}" for k, v in _VISION.items()]
    return out + [f"{prefix}.text.{k}={v}" for k, v in _TEXT.items()] + [
        "dataloader.train.tokenizer.context_length=32"]


CLIP_TINY = _overrides("model.model") + ["dataloader.train.image_transform.size=32"]
COSMOS_TINY = _overrides("model.student.encoder") + [
    "model.student.image_cross_pooler.heads=2", "model.student.text_cross_pooler.heads=2",
    "dataloader.train.image_transform.global_size=32",
    "dataloader.train.image_transform.local_size=16"]
OPENCLIP_TINY = {"embed_dim": 16,
                 "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                "head_width": 16},
                 "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2,
                              "layers": 1}}


@pytest.fixture(scope="module")
def tool():
    """tools/benchmark.py as a module (in process: no interpreter start per run)."""
    spec = importlib.util.spec_from_file_location("benchmark_tool",
                                                  os.path.join(REPO, "tools", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _run_step(tool, tmp_path, config: str, overrides: List[str], *extra: str) -> dict:
    out = tmp_path / "step.json"
    torch.set_num_threads(1)
    code = tool.main(["step", "--config-file", config, "--batch", "4", "--steps", "2",
                      "--warmup", "1", "--phase-steps", "2", "--data", "random", "--device", "cpu",
                      "--flops", "--json", str(out), *extra, *overrides])
    assert code == 0
    return json.loads(out.read_text())


def _check_phases(report: dict, expected: List[str]) -> None:
    phases = report["phases"]
    assert phases["steps"] == 2 and list(phases["ms"]) == expected
    assert all(v >= 0 for v in phases["ms"].values()), phases
    named = sum(v for k, v in phases["ms"].items() if k != OTHER)
    # the named phases are measured inside the step and cover almost all of it on a tiny model
    assert 0.5 * phases["step_ms"] <= named <= phases["step_ms"] * 1.001, phases


@pytest.mark.slow
def test_clip_step_with_openclip(tool, tmp_path, capsys) -> None:
    pytest.importorskip("open_clip", reason="open_clip not installed: no OpenCLIP comparison")
    arch = tmp_path / "oc_tiny.json"  # no tiny OpenCLIP arch ships with open_clip: our own config
    arch.write_text(json.dumps(OPENCLIP_TINY))
    report = _run_step(tool, tmp_path, CLIP_CONFIG, CLIP_TINY, "--openclip", str(arch))
    ours, openclip = report["results"]
    assert ours["status"] == "ok" and ours["pairs_per_s"] > 0 and ours["setting"].startswith("CLIP")
    assert ours["ms_mean"] > 0 and ours["ms_median"] > 0
    assert ours["peak_gib"] is None and ours["mfu"] is None  # CPU: n/a
    _check_phases(report, [STUDENT, LOSS, BACKWARD, OPTIMIZER, OTHER])
    assert openclip["status"] == "ok" and openclip["pairs_per_s"] > 0, openclip
    assert report["ratios"][openclip["setting"]] == pytest.approx(
        ours["pairs_per_s"] / openclip["pairs_per_s"])
    flops = report["flops"]
    assert flops["multiplier"] == {"model": 3, "loss": 3, "(meta-arch)": 3}
    # same towers as OpenCLIP's tiny CLIP: the same training FLOPs up to our loss's logits
    assert ours["gflop_per_pair"] == pytest.approx(openclip["gflop_per_pair"], rel=1e-3)
    stdout = capsys.readouterr().out
    assert "| CLIP (clip_tiny_synthetic) |" in stdout and "pairs/s ratio, ours / OpenCLIP" in stdout
    assert "| optimizer |" in stdout and "teacher" not in stdout


@pytest.mark.slow
def test_cosmos_step_has_teacher_and_ema(tool, tmp_path) -> None:
    report = _run_step(tool, tmp_path, COSMOS_CONFIG, COSMOS_TINY)
    (ours,) = report["results"]
    assert ours["status"] == "ok" and ours["pairs_per_s"] > 0
    _check_phases(report, [STUDENT, TEACHER, LOSS, BACKWARD, OPTIMIZER, EMA, OTHER])
    assert report["phases"]["ms"][TEACHER] > 0 and report["phases"]["ms"][EMA] > 0
    flops = report["flops"]
    assert flops["multiplier"]["teacher"] == 1 and flops["multiplier"]["student"] == 3
    per_pair = flops["forward_gflop_per_pair"]
    expected = sum(flops["multiplier"][k] * v for k, v in per_pair.items())
    assert flops["train_gflop_per_pair"] == pytest.approx(expected)
    assert ours["gflop_per_pair"] == pytest.approx(expected)
    assert per_pair["teacher"] > 0 and per_pair["student"] > per_pair["teacher"]
    assert flops["uncounted_ops"] == []


def _vit_macs(b: int, image: int, patch: int, width: int, layers: int, out: int,
              mlp: int = 4) -> int:
    """Multiply-adds of the ViT forward: patch conv, per block qkv + q·kᵀ + attn·v + out proj +
    MLP, and the CLS projection."""
    n = (image // patch) ** 2
    t = n + 1
    conv = b * n * width * 3 * patch * patch
    block = b * t * width * (3 * width + width + 2 * mlp * width) + 2 * b * t * t * width
    return conv + layers * block + b * width * out


def _text_macs(b: int, length: int, width: int, layers: int, out: int, mlp: int = 4) -> int:
    """The causal text tower: full L × L attention products (masking is not subtracted)."""
    block = b * length * width * (4 * width + 2 * mlp * width) + 2 * b * length * length * width
    return layers * block + b * width * out


def test_flops_of_tiny_towers_match_hand_count() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=16, width=32, layers=2, heads=2,
                            output_dim=16)
    flops, uncounted = forward_flops(vit, (torch.randn(3, 3, 32, 32),))
    # B 3, 4 patches + CLS = 5 tokens, width 32, 2 blocks, MLP 128, output 16:
    # 2·(3·4·32·(3·16·16) + 2·(3·5·32·(96 + 32 + 2·128) + 2·3·5·5·32) + 3·32·16)
    # = 2·(294912 + 2·189120 + 1536) = 1349376
    assert flops[""] == 2 * _vit_macs(3, 32, 16, 32, 2, 16) == 1349376
    assert flops["transformer"] == 2 * 2 * (3 * 5 * 32 * 384 + 2 * 3 * 25 * 32) == 756480
    assert uncounted == []
    text = TextTransformer(context_length=16, vocab_size=100, width=32, layers=1, heads=2,
                           output_dim=8)
    tokens = torch.randint(1, 98, (2, 16))
    tokens[:, -1] = 99
    flops, _ = forward_flops(text, (tokens,))
    # 2·(2·16·32·(4·32 + 2·128) + 2·2·16·16·32 + 2·32·8) = 2·426496
    assert flops[""] == 2 * _text_macs(2, 16, 32, 1, 8) == 852992


def test_random_batch_keeps_structure() -> None:
    per_sample = ["dataloader.train.image_transform._target_=image_crops.cosmos_multicrop",
                  "dataloader.augment=null"]
    cfg = LazyConfig.apply_overrides(LazyConfig.load(COSMOS_CONFIG), COSMOS_TINY + per_sample)
    template = template_batch(cfg, num_samples=3)
    batch = random_batch(template, 7, torch.device("cpu"))
    assert set(batch) == set(template) and batch["batch_size"] == 7
    for key in ("global_crops", "local_crops"):
        assert [t.shape[1:] for t in batch[key]] == [t.shape[1:] for t in template[key]]
        assert all(t.shape[0] == 7 and t.dtype == torch.float32 for t in batch[key])
    # the fast multi-crop (the config's default): uint8 crops and their parameters repeated
    fast = template_batch(LazyConfig.apply_overrides(LazyConfig.load(COSMOS_CONFIG),
                                                     COSMOS_TINY), num_samples=3)
    fast_batch = random_batch(fast, 7, torch.device("cpu"))
    for key in ("global_crops_uint8", "local_crops_uint8", "global_photometric"):
        assert fast_batch[key].shape == (7, *fast[key].shape[1:])
        assert torch.equal(fast_batch[key], fast[key][torch.arange(7) % 3])
    assert fast_batch["global_crops_uint8"].dtype == torch.uint8
    # resize_on_device: the canvases and the float64 crop boxes repeated, not redrawn
    moved_cfg = LazyConfig.apply_overrides(LazyConfig.load(COSMOS_CONFIG), COSMOS_TINY)
    moved_cfg.dataloader.train.image_transform.resize_on_device = True
    moved = template_batch(moved_cfg, num_samples=3)
    moved_batch = random_batch(moved, 7, torch.device("cpu"))
    for key in ("image_uint8", "global_boxes", "local_boxes"):
        assert torch.equal(moved_batch[key], moved[key][torch.arange(7) % 3])
    assert moved_batch["global_boxes"].dtype == torch.float64
    tokens, ref = batch["tokens"], template["tokens"][torch.arange(7) % 3]
    assert tokens.shape == (7, *template["tokens"].shape[1:]) and tokens.dtype == torch.int64
    eot = ref.argmax(-1)
    assert torch.equal(tokens.argmax(-1), eot) and torch.equal(tokens == 0, ref == 0)
    assert torch.equal(tokens[..., 0], ref[..., 0])
    full = random_batch(template, 5, torch.device("cpu"), text_lengths="full")["tokens"]
    assert (full.argmax(-1) == full.shape[-1] - 1).all() and (full > 0).all()


def test_bad_openclip_arch_is_one_line(tool, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        tool.main(["step", "--config-file", CLIP_CONFIG, "--device", "cpu", "--openclip",
                   "No-Such-Arch", *CLIP_TINY])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --openclip No-Such-Arch: not an OpenCLIP model")
