"""The projects/ example of a crop policy: centre-biased multi-crop registered from outside the
core and swapped in by registry name (docs/adding_a_crop_policy.md)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos.config import LazyConfig, instantiate
from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cosmos.registry import IMAGE_CROPS
from tests.helpers import REPO

CONFIG = os.path.join(REPO, "projects", "center_bias_crops", "configs",
                      "cosmos_center_bias_tiny_synthetic.py")


def _project():
    LazyConfig.load(CONFIG)  # its `imports` list registers image_crops.center_bias_multicrop
    from projects.center_bias_crops.center_bias_crops import policy
    return policy


def coordinate_image(width: int = 64, height: int = 48) -> Image.Image:
    """Red = 3·x, green = 4·y, blue = 0: a pixel's value says where it came from."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([3 * x, 4 * y, np.zeros_like(x)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def to_pixels(view: torch.Tensor) -> torch.Tensor:
    """A normalised (3, s, s) view → 0…255 integers."""
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    return torch.round((view * std + mean) * 255)


def test_config_swaps_the_policy_by_name() -> None:
    cfg = LazyConfig.load(CONFIG)
    assert cfg.dataloader.train.image_transform._target_ == "image_crops.center_bias_multicrop"
    assert cfg.dataloader.augment is None  # the policy makes float crops itself
    policy = instantiate(cfg.dataloader.train.image_transform)
    assert type(policy) is IMAGE_CROPS.get("center_bias_multicrop")
    assert type(policy).__module__ == "projects.center_bias_crops.center_bias_crops.policy"


def test_centred_crop_holds_the_hand_computed_pixels() -> None:
    module = _project()
    # sigma 0, area fraction 1/4: side = 0.5 · 48 = 24, box at left (64 − 24)/2 = 20, top 12
    policy = module.CenterBiasMultiCrop(global_size=24, local_size=8, num_global=1,
                                        num_local=1, global_scale=(0.25, 0.25), sigma=0.0,
                                        flip_p=0.0)
    views = policy(coordinate_image(), random.Random(0))
    pixels = to_pixels(views["global_crops"][0])
    cols, rows = torch.arange(24, dtype=torch.float32), torch.arange(24, dtype=torch.float32)
    torch.testing.assert_close(pixels[0], (3 * (20 + cols)).expand(24, 24), atol=0, rtol=0)
    torch.testing.assert_close(pixels[1], (4 * (12 + rows))[:, None].expand(24, 24),
                               atol=0, rtol=0)
    assert views["local_crops"][0].shape == (3, 8, 8)
    flipped = module.CenterBiasMultiCrop(global_size=24, local_size=8, num_global=1,
                                         num_local=0, global_scale=(0.25, 0.25), sigma=0.0,
                                         flip_p=1.0)(coordinate_image(), random.Random(0))
    torch.testing.assert_close(to_pixels(flipped["global_crops"][0])[0],
                               (3 * (20 + 23 - cols)).expand(24, 24), atol=0, rtol=0)
    assert flipped["local_crops"] == []


def test_boxes_stay_inside_and_gather_around_the_centre() -> None:
    module = _project()
    rng = random.Random(0)
    boxes = [module.center_biased_box(100, 80, (0.05, 0.1), 0.1, rng) for _ in range(500)]
    assert all(0 <= left and left + side <= 100 and 0 <= top and top + side <= 80
               for left, top, side in boxes)
    centres_x = np.array([left + side / 2 for left, _, side in boxes])
    assert abs(centres_x.mean() - 50) < 2.0      # σ of the mean: 10 / √500 ≈ 0.45
    assert 8.0 < centres_x.std() < 12.0          # σ · width = 10
    # sides: √a · 80 with a in [0.05, 0.1] → 17.9 … 25.3
    assert {side for _, _, side in boxes} <= set(range(18, 26))
    # a box too far out is moved inside, not shrunk
    assert module.center_biased_box(100, 80, (0.25, 0.25), 10.0, random.Random(1))[2] == 40


def test_views_depend_on_the_passed_rng_only() -> None:
    module = _project()
    policy = module.CenterBiasMultiCrop(global_size=16, local_size=8, num_global=2, num_local=2)
    image = coordinate_image()
    torch.manual_seed(1)
    random.seed(1)
    first = policy(image, random.Random(5))
    torch.manual_seed(2)   # other global generators: the same views
    random.seed(2)
    second = policy(image, random.Random(5))
    for key in ("global_crops", "local_crops"):
        assert all(torch.equal(a, b) for a, b in zip(first[key], second[key]))
    other = policy(image, random.Random(6))
    assert not torch.equal(first["global_crops"][0], other["global_crops"][0])
    with pytest.raises(ValueError, match="global_scale"):
        module.CenterBiasMultiCrop(global_scale=(0.5, 0.2))


@pytest.mark.slow
def test_project_trains_from_the_stock_entry_point(tmp_path, synthetic_shards) -> None:
    out = tmp_path / "run"
    tiny = [f"train.output_dir={out}", "train.max_iter=2", "train.eval_period=0",
            "train.log_period=1", "dataloader.train.batch_size=2",
            "dataloader.train.num_workers=0", f"dataloader.train.urls={synthetic_shards}",
            "evaluation.synthetic.dataset.num_samples=4",
            "evaluation.segmentation.dataset.num_samples=2",
            "dataloader.train.image_transform.global_size=32",
            "dataloader.train.image_transform.local_size=16",
            "model.student.encoder.visual.image_size=32", "model.student.encoder.visual.width=32",
            "model.student.encoder.visual.layers=1", "model.student.encoder.text.width=32",
            "model.student.encoder.text.layers=1"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", CONFIG, *tiny],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    saved = (out / "config.yaml").read_text()
    assert "image_crops.center_bias_multicrop" in saved
    assert "projects.center_bias_crops.center_bias_crops" in saved
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if "loss" in s]
    assert len(losses) == 2 and all(0 < v < 100 for v in losses)
    # the saved YAML builds the policy again in a new process
    code = ("from cosmos.config import LazyConfig, instantiate; "
            f"c = LazyConfig.load({str(out / 'config.yaml')!r}); "
            "p = instantiate(c.dataloader.train.image_transform); "
            "print(type(p).__name__, p.global_view, c.dataloader.augment)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.stdout.strip() == "CenterBiasMultiCrop (32, (0.4, 1.0)) None", res.stderr[-2000:]
