"""The projects/ example of a backbone: a conv-stem ViT registered from outside the core and
swapped in by registry name (docs/adding_a_backbone.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from cosmos.config import LazyConfig, instantiate
from cosmos.registry import BACKBONES
from tests.helpers import REPO

CONFIG = os.path.join(REPO, "projects", "conv_stem_vit", "configs",
                      "cosmos_conv_stem_tiny_synthetic.py")


def _project():
    LazyConfig.load(CONFIG)  # its `imports` list registers backbones.conv_stem_vit
    from projects.conv_stem_vit.conv_stem_vit import backbone
    return backbone


def test_config_swaps_the_image_tower_by_name() -> None:
    cfg = LazyConfig.load(CONFIG)
    assert cfg.model.student.encoder.visual._target_ == "backbones.conv_stem_vit"
    tower = instantiate(cfg.model.student.encoder.visual)
    assert type(tower) is BACKBONES.get("conv_stem_vit")
    assert type(tower).__module__ == "projects.conv_stem_vit.conv_stem_vit.backbone"
    assert (tower.image_size, tower.patch_size, tower.width) == (64, 8, 96)  # the core's sizes
    # the stem: three stride-2 stages 3 → 24 → 48 → 96 channels, then 1×1 to the width
    convs = [m for m in tower.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (3, 24, 2), (24, 48, 2), (48, 96, 2), (96, 96, 1)]
    assert tower.fsdp_units() == list(tower.transformer.resblocks)


def _changed_tokens(stem: nn.Module, pixel) -> set:
    """Token-grid positions of ``stem``'s output that change when one input pixel changes."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = stem(x)
        x[0, :, pixel[0], pixel[1]] += 1.0
        diff = (stem(x) - before).abs().amax(dim=1)[0]  # (4, 4)
    return {tuple(ij) for ij in (diff > 1e-6).nonzero().tolist()}


def test_stem_receptive_field_overlaps_neighbouring_patches() -> None:
    backbone = _project()
    torch.manual_seed(0)
    stem = backbone.conv_stem(8, 16, 4)
    patchify = nn.Conv2d(3, 16, kernel_size=8, stride=8)
    # token (i, j) of the conv stem sees pixels [8i − 7, 8i + 7] × [8j − 7, 8j + 7]
    assert _changed_tokens(stem, (0, 7)) == {(0, 0), (0, 1)}
    assert _changed_tokens(stem, (0, 8)) == {(0, 1)}
    assert _changed_tokens(stem, (15, 15)) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    # the ViT's patchify sees its own 8 × 8 patch only
    assert _changed_tokens(patchify, (0, 7)) == {(0, 0)}
    assert _changed_tokens(patchify, (15, 15)) == {(1, 1)}


def test_patch_size_must_be_a_power_of_two() -> None:
    backbone = _project()
    with pytest.raises(ValueError, match="power-of-two patch_size"):
        backbone.ConvStemViT(image_size=36, patch_size=12, width=32, layers=1, heads=2)


@pytest.mark.slow
def test_project_trains_from_the_stock_entry_point(tmp_path, synthetic_shards) -> None:
    out = tmp_path / "run"
    tiny = [f"train.output_dir={out}", "train.max_iter=2", "train.eval_period=0",
            "train.log_period=1", "dataloader.train.batch_size=2",
            "dataloader.train.num_workers=0", f"dataloader.train.urls={synthetic_shards}",
            "evaluation.synthetic.dataset.num_samples=4",
            "evaluation.segmentation.dataset.num_samples=2",
            "dataloader.train.image_transform.global_size=32",
            "model.student.encoder.visual.image_size=32", "model.student.encoder.visual.width=32",
            "model.student.encoder.visual.layers=1", "model.student.encoder.text.width=32",
            "model.student.encoder.text.layers=1"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", CONFIG, *tiny],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    saved = (out / "config.yaml").read_text()
    assert "backbones.conv_stem_vit" in saved and "projects.conv_stem_vit.conv_stem_vit" in saved
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if "loss" in s]
    assert len(losses) == 2 and all(0 < v < 100 for v in losses)
    # the final evaluation ran on the new tower, dense segmentation included
    results = json.loads((out / "eval" / "results.json").read_text())
    assert any("segmentation" in k for k in results), sorted(results)
    # the saved YAML builds the tower again in a new process and takes the exported weights
    code = ("import torch; from cosmos.config import LazyConfig, instantiate; "
            f"c = LazyConfig.load({str(out / 'config.yaml')!r}); "
            "enc = instantiate(c.model.student.encoder); "
            f"state = torch.load({str(out / 'student.pth')!r}, weights_only=True); "
            "enc.load_state_dict(state); "
            "print(type(enc.visual).__name__, tuple(state['visual.stem.0.weight'].shape))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.stdout.strip() == "ConvStemViT (24, 3, 3, 3)", res.stderr[-2000:]
