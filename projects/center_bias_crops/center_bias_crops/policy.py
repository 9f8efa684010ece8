"""Multi-crop whose boxes gather around the image centre (``image_crops.center_bias_multicrop``).

Photos and the synthetic scenes put their main object near the centre; this policy draws the
crop centres from a Gaussian around the image centre instead of uniformly, so the local crops
see the main object more often than with ``image_crops.cosmos_multicrop``. A minimal policy
that shows the crop-policy contract (``cosmos/data/crop_policy.py``): no colour augmentation.

Per view (global views first, then local ones, each with its own size and scale range):
side = round(√a · min(W, H)) with the area fraction a ~ U(scale); centre = image centre +
(σ·W·z₁, σ·H·z₂) with z ~ N(0, 1), moved so that the square box stays inside the image;
PIL bicubic resize to ``size``; horizontal flip with probability ``flip_p``; CLIP normalise.
Every draw (a, z₁, z₂, flip, in that order) comes from the ``random.Random`` the loader passes,
so a sample's views are a function of the seed and its stream position and nothing else.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torchvision.transforms import functional as TF

from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cosmos.registry import IMAGE_CROPS

Box = Tuple[int, int, int]  # (left, top, side) in pixels


def center_biased_box(width: int, height: int, scale: Tuple[float, float], sigma: float,
                      rng: Any) -> Box:
    """A square box (left, top, side) of area fraction U(scale) of the shorter side squared,
    centred at the image centre plus a N(0, σ·size) offset per axis, kept inside the image."""
    side = max(1, round((rng.uniform(*scale) ** 0.5) * min(width, height)))
    cx = width / 2 + rng.gauss(0.0, sigma * width)
    cy = height / 2 + rng.gauss(0.0, sigma * height)
    left = min(max(round(cx - side / 2), 0), width - side)
    top = min(max(round(cy - side / 2), 0), height - side)
    return left, top, side


@IMAGE_CROPS.register(name="center_bias_multicrop")
class CenterBiasMultiCrop:
    """``num_global`` views of ``global_size`` px and ``num_local`` of ``local_size`` px.

    Returns ``{"global_crops": [(3, g, g)] * num_global, "local_crops": [(3, l, l)] *
    num_local}`` float32, CLIP-normalised (batch keys of ``meta_archs.cosmos``); ``sigma`` is
    the standard deviation of the crop centre as a fraction of the image side (0: centred).
    """

    def __init__(self, global_size: int = 224, local_size: int = 96, num_global: int = 2,
                 num_local: int = 6, global_scale: Tuple[float, float] = (0.4, 1.0),
                 local_scale: Tuple[float, float] = (0.05, 0.4), sigma: float = 0.15,
                 flip_p: float = 0.5, mean: Sequence[float] = OPENAI_CLIP_MEAN,
                 std: Sequence[float] = OPENAI_CLIP_STD) -> None:
        if num_global < 1 or num_local < 0 or sigma < 0:
            raise ValueError(f"need num_global >= 1, num_local >= 0 and sigma >= 0, got "
                             f"{num_global}, {num_local}, {sigma}")
        for name, (low, high) in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, "
                                 f"got {(low, high)}")
        self.global_view = (int(global_size), (float(global_scale[0]), float(global_scale[1])))
        self.local_view = (int(local_size), (float(local_scale[0]), float(local_scale[1])))
        self.num_global, self.num_local = int(num_global), int(num_local)
        self.sigma, self.flip_p = float(sigma), float(flip_p)
        self.mean, self.std = list(mean), list(std)

    def view(self, image: Image.Image, size: int, scale: Tuple[float, float],
             rng: Any) -> torch.Tensor:
        """One view: box → bicubic resize → flip → (3, size, size) normalised."""
        left, top, side = center_biased_box(image.width, image.height, scale, self.sigma, rng)
        crop = image.crop((left, top, left + side, top + side))
        crop = crop.resize((size, size), Image.BICUBIC)
        if rng.random() < self.flip_p:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return TF.normalize(TF.to_tensor(crop), self.mean, self.std)

    def __call__(self, image: Image.Image, rng: Optional[random.Random] = None
                 ) -> Dict[str, List[torch.Tensor]]:
        draws: Any = random if rng is None else rng
        if image.mode != "RGB":
            image = image.convert("RGB")
        return {
            "global_crops": [self.view(image, *self.global_view, draws)
                             for _ in range(self.num_global)],
            "local_crops": [self.view(image, *self.local_view, draws)
                            for _ in range(self.num_local)],
        }
