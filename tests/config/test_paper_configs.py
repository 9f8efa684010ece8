"""The paper configs carry the official hyper-parameters (the official ``src/train_*.sh`` and
``src/training/params.py``), and each tiny twin keeps the recipe while changing only sizes, data
location and run length."""
from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from cosmos.config import LazyConfig
from tests.helpers import REPO

# data: (per-GPU batch, EMA momentum, steps per epoch, total steps, first shard, shard count)
OFFICIAL = {
    "cc3m": (64, 0.999, 2768, 88576, "/data/cc3m_recap/00000.tar", 576),
    "cc12m": (32, 0.99, 2448, 78336, "/data/cc12m_recap/00000.tar", 2176),
    "yfcc15m": (32, 0.99, 3440, 110080, "/data/yfcc15m_recap/00000.tar", 3637),
    "merged30m": (32, 0.99, 6576, 210432, "/data/yfcc15m_recap/00000.tar", 3637 + 2176 + 576),
    "pixelprose": (32, 0.99, 3680, 117760, "/data/pixelprose/00000.tar", 1700),
}
CASES = [(arch, data) for arch in ("vitb16", "vitb32") for data in OFFICIAL]


def _load(*parts):
    return LazyConfig.load(os.path.join(REPO, "configs", "cosmos", *parts))


def _recipe(cfg) -> dict:
    """What must not change between a paper config and its twin."""
    dl, m = cfg.dataloader.train, cfg.model
    return {
        "optimizer": {k: cfg.optimizer[k] for k in ("lr", "betas", "eps")},
        "weight_decay": cfg.optimizer.params.weight_decay,
        "ema": OmegaConf.to_container(cfg.ema),
        "text_crops": {k: v for k, v in OmegaConf.to_container(dl.text_transform).items()
                       if k not in ("caption_key", "original_key")},
        "crop_counts_scales": {k: dl.image_transform[k] for k in (
            "num_global", "num_local", "global_scale", "local_scale")},
        "losses": (OmegaConf.to_container(m.clip_loss), OmegaConf.to_container(m.distill_loss)),
        "flags": {k: m[k] for k in ("mask_text_padding", "cross_attention", "distillation",
                                    "num_global_captions", "clip_weight", "distill_weight")},
        "schedule": cfg.lr_multiplier._target_, "amp": OmegaConf.to_container(cfg.train.amp),
        "resampled": dl.resampled, "target": dl._target_,
    }


@pytest.mark.parametrize("arch,data", CASES)
def test_paper_config_has_official_values(arch, data, monkeypatch) -> None:
    monkeypatch.setenv("COSMOS_DATA", "/data")
    cfg = _load(f"cosmos_{arch}_{data}.py")
    batch, momentum, per_epoch, total, first, count = OFFICIAL[data]
    assert cfg.dataloader.train.batch_size == batch
    assert cfg.ema.momentum.momentum == momentum and cfg.ema.before_optimizer_step is False
    assert (cfg.train.max_iter, cfg.train.checkpoint_period) == (total, per_epoch)
    assert total == 32 * per_epoch
    adamw = (cfg.optimizer.lr, tuple(cfg.optimizer.betas), cfg.optimizer.eps)
    assert adamw == (5e-4, (0.9, 0.98), 1e-8)
    assert cfg.optimizer.params.weight_decay == 0.5 and cfg.lr_multiplier.warmup_steps == 2000
    assert cfg.train.grad_clip is None and cfg.train.amp.dtype == "fp16"
    views = cfg.dataloader.train.image_transform
    sizes = (views.global_size, views.local_size, views.num_global, views.num_local)
    assert sizes == (224, 96, 2, 6)
    assert tuple(views.global_scale) == (0.4, 1.0) and tuple(views.local_scale) == (0.05, 0.4)
    assert cfg.dataloader.train.text_transform.num_captions == 8
    visual = cfg.model.student.encoder.visual
    patch = 16 if arch == "vitb16" else 32
    assert (visual.width, visual.layers, visual.patch_size) == (768, 12, patch)
    assert cfg.model.mask_text_padding is False  # official: padding positions are keys
    from cosmos.data.shards import expand_urls
    sources = expand_urls(cfg.dataloader.train.urls)  # resolves ${oc.env:COSMOS_DATA}
    assert sources[0][0] == first and sum(map(len, sources)) == count
    assert len(sources) == (3 if data == "merged30m" else 1)
    crop = cfg.dataloader.train.text_transform._target_
    expected = ("text_crops.pixelprose_textcrop" if data == "pixelprose"
                else "text_crops.cosmos_textcrop")
    assert crop == expected


@pytest.mark.parametrize("arch,data", CASES)
def test_tiny_twin_keeps_the_recipe(arch, data) -> None:
    paper, twin = _load(f"cosmos_{arch}_{data}.py"), _load("tiny", f"cosmos_{arch}_{data}.py")
    assert _recipe(twin) == _recipe(paper)
    assert twin.dataloader.train.urls.count("::") == paper.dataloader.train.urls.count("::")
    assert "synthetic_scenes" in twin.dataloader.train.urls
    paper_visual = paper.model.student.encoder.visual
    twin_visual = twin.model.student.encoder.visual
    ratio = paper_visual.patch_size / twin_visual.patch_size
    assert ratio == 2.0  # 16 → 8 px and 32 → 16 px: B/32's patch stays twice B/16's
    assert twin_visual.image_size == twin.dataloader.train.image_transform.global_size
