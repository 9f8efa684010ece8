"""Every file in configs/ loads, saves to YAML and reloads equal; every runnable config builds
and trains one step with tiny shapes."""
from __future__ import annotations

import glob
import os

import pytest
import torch
from omegaconf import OmegaConf

from cosmos.config import LazyConfig, instantiate
from cosmos.engine.defaults import build_batch_augment, build_optimizer
from cosmos.engine.trainer import move_to_device
from tests.helpers import REPO, TINY_VALUES

ALL_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True))
RUNNABLE = [p for p in ALL_CONFIGS if "/common/" not in p]
# The two demo configs (CLIP and COSMOS) stay in the fast subset; the others' steps are slow.
DEMO_CONFIGS = ("configs/clip/clip_tiny_synthetic.py", "configs/cosmos/cosmos_tiny_synthetic.py")


def _ids(paths):
    return [os.path.relpath(p, REPO) for p in paths]


def shrink(node) -> None:
    """Set every size-like argument of every LazyCall node to a tiny value."""
    if OmegaConf.is_dict(node):
        for key in list(node.keys()):
            if key in TINY_VALUES and "_target_" in node:
                node[key] = TINY_VALUES[key]
            elif key == "context_length":
                node[key] = 32
            else:
                shrink(node._get_node(key))
    elif OmegaConf.is_list(node):
        for i in range(len(node)):
            shrink(node._get_node(i))


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_ids(ALL_CONFIGS))
def test_config_saves_and_reloads(path, tmp_path) -> None:
    cfg = LazyConfig.load(path)
    out = tmp_path / "config.yaml"
    LazyConfig.save(cfg, str(out))
    again = LazyConfig.load(str(out))
    assert set(again.keys()) == set(cfg.keys())
    LazyConfig.save(again, str(tmp_path / "again.yaml"))
    assert (tmp_path / "again.yaml").read_text() == out.read_text()


def point_at_test_shards(cfg, urls: str) -> None:
    """Shard-reading configs read the test shards instead, keeping their number of sources."""
    train = cfg.dataloader.train
    if "urls" in train:
        train.urls = "::".join([urls] * (str(train.urls).count("::") + 1))


@pytest.mark.parametrize("path", [
    p if os.path.relpath(p, REPO) in DEMO_CONFIGS else pytest.param(p, marks=pytest.mark.slow)
    for p in RUNNABLE], ids=_ids(RUNNABLE))
def test_config_builds_and_runs_one_step(path, tmp_path, synthetic_shards) -> None:
    cfg = LazyConfig.load(path)
    for key in ("model", "optimizer", "lr_multiplier", "dataloader", "train"):
        assert key in cfg, f"{path} lacks top-level '{key}'"
    shrink(cfg)
    point_at_test_shards(cfg, synthetic_shards)
    LazyConfig.save(cfg, str(tmp_path / "tiny.yaml"))
    cfg = LazyConfig.load(str(tmp_path / "tiny.yaml"))  # run from the saved YAML
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    optimizer = build_optimizer(cfg, model)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    augment = build_batch_augment(cfg)  # the photometric half of the fast multi-crop
    batch = augment(batch, "cpu") if augment is not None else batch
    losses = model(move_to_device(batch, torch.device("cpu")))
    assert "loss" in losses and torch.isfinite(losses["loss"])
    before = [p.detach().clone() for p in model.parameters()]
    losses["loss"].backward()
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    for name, node in (cfg.get("evaluation") or {}).items():
        if "dataset" not in node:  # evaluators of files on disk (own data: their own test)
            continue
        node.dataset.num_samples = 4
        results = instantiate(node)(model.encoders()["student"])
        assert results and all(0 <= v <= 100 for v in results.values())


@pytest.mark.slow
def test_image_tower_swap_is_one_override() -> None:
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "clip", "clip_tiny_synthetic.py"))
    LazyConfig.apply_overrides(cfg, [
        "model.model.visual={_target_: backbones.timm_vit, model_name: vit_tiny_patch16_224, "
        "image_size: 32, output_dim: 128}"])
    model = instantiate(cfg.model)
    assert type(model.model.visual).__name__ == "TimmImageTower"
    assert model.model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 128)
