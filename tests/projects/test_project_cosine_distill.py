"""The projects/ example: a loss added from outside the core, swapped in by registry name."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cosmos.config import LazyConfig, instantiate
from cosmos.registry import LOSSES
from tests.helpers import REPO

CONFIG = os.path.join(REPO, "projects", "cosine_distill", "configs",
                      "cosmos_cosine_tiny_synthetic.py")


def test_config_registers_and_swaps_the_loss() -> None:
    cfg = LazyConfig.load(CONFIG)
    assert cfg.model.distill_loss._target_ == "losses.cosine_distill"
    loss = instantiate(cfg.model.distill_loss)
    assert type(loss).__name__ == "CosineDistillLoss" and LOSSES.get("cosine_distill") is type(loss)
    assert type(loss).__module__ == "projects.cosine_distill.cosine_distill.loss"  # not the core


def test_cosine_loss_values() -> None:
    cls = LOSSES.get("cosine_distill") if "cosine_distill" in LOSSES else None
    if cls is None:
        LazyConfig.load(CONFIG)
        cls = LOSSES.get("cosine_distill")
    x = [F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)]
    same = cls()(x, x, x, x, torch.tensor(1.0))
    assert abs(float(same)) < 1e-7                     # identical embeddings: no loss
    orth = [torch.tensor([[0.0, 1.0], [1.0, 0.0]])]
    # student blocks [x, x] against teacher blocks [orth, orth]: cosine 0 everywhere → loss 1
    assert abs(float(cls()(x, x, orth, orth, torch.tensor(1.0))) - 1.0) < 1e-7


@pytest.mark.slow
def test_project_trains_from_the_stock_entry_point(tmp_path, synthetic_shards) -> None:
    out = tmp_path / "run"
    tiny = [f"train.output_dir={out}", "train.max_iter=2", "train.eval_period=0",
            "dataloader.train.batch_size=2", "dataloader.train.num_workers=0",
            f"dataloader.train.urls={synthetic_shards}",
            "evaluation.synthetic.dataset.num_samples=4",
            "evaluation.segmentation.dataset.num_samples=2",
            "dataloader.train.image_transform.global_size=32",
            "model.student.encoder.visual.image_size=32",
            "model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
            "model.student.encoder.text.width=32", "model.student.encoder.text.layers=1"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", CONFIG, *tiny],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    saved = (out / "config.yaml").read_text()
    assert "losses.cosine_distill" in saved and "projects.cosine_distill.cosine_distill" in saved
    # the saved YAML loads again in a fresh process and builds the project's loss by name
    code = ("from cosmos.config import LazyConfig, instantiate; "
            f"c = LazyConfig.load({str(out / 'config.yaml')!r}); "
            "print(type(instantiate(c.model.distill_loss)).__name__)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.stdout.strip() == "CosineDistillLoss", res.stderr[-2000:]
    # the same swap as overrides on the core config, in a fresh process
    code = ("from cosmos.engine.defaults import load_config; "
            "from cosmos.config import instantiate; "
            "c = load_config('configs/cosmos/cosmos_tiny_synthetic.py', "
            "['+imports=[projects.cosine_distill.cosine_distill]', "
            "'model.distill_loss._target_=losses.cosine_distill']); "
            "print(type(instantiate(c.model.distill_loss)).__name__)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.stdout.strip() == "CosineDistillLoss", res.stderr[-2000:]
