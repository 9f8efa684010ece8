"""COSMOS / DINO multi-crop image views (reference/cosmos-official.md §3.1).

Probabilistic gates (jitter, grayscale, blur, solarize) and the blur radius are drawn from a
``random.Random`` (the official code uses Python's ``random``); crop geometry, flips and jitter
parameters come from torch's RNG (torchvision). The loader seeds both per sample.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from PIL import ImageFilter, ImageOps
from torchvision import transforms as T

from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cosmos.registry import IMAGE_CROPS


@dataclass(frozen=True)
class Recipe:
    """What one view does after its random resized crop."""

    size: int
    scale: Tuple[float, float]
    blur_p: float
    solarize_p: float = 0.0


class _View:
    """RandomResizedCrop → RGB → flip → jitter (p .8) → gray (p .2) → blur → solarize → tensor."""

    def __init__(self, recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> None:
        self.recipe = recipe
        self.crop = T.RandomResizedCrop(recipe.size, scale=tuple(recipe.scale), ratio=(3 / 4, 4 / 3),
                                        interpolation=T.InterpolationMode.BICUBIC)
        self.flip = T.RandomHorizontalFlip(p=0.5)
        self.jitter = T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
        self.gray = T.Grayscale(num_output_channels=3)
        self.finish = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __call__(self, image, rng: random.Random) -> torch.Tensor:
        image = self.flip(self.crop(image).convert("RGB"))
        if rng.random() < 0.8:
            image = self.jitter(image)
        if rng.random() < 0.2:
            image = self.gray(image)
        if rng.random() < self.recipe.blur_p:
            image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
        if self.recipe.solarize_p and rng.random() < self.recipe.solarize_p:
            image = ImageOps.solarize(image, threshold=128)
        return self.finish(image)


@IMAGE_CROPS.register(name="cosmos_multicrop")
class MultiCrop:
    """``num_global`` global views and ``num_local`` local views of one image.

    Official defaults: 2 × 224 px, scale (0.4, 1) — view 1 always blurred, view 2 blurred with
    p 0.1 and solarized with p 0.2 (further global views use view 2's recipe) — and 6 × 96 px,
    scale (0.05, 0.4), blurred with p 0.5. ``num_local=0`` is the "no local crops" ablation.
    Returns ``{"global_crops": [(3, g, g)] * num_global, "local_crops": [(3, l, l)] * num_local}``.
    """

    def __init__(self, global_size: int = 224, local_size: int = 96, num_global: int = 2,
                 num_local: int = 6, global_scale: Tuple[float, float] = (0.4, 1.0),
                 local_scale: Tuple[float, float] = (0.05, 0.4),
                 mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD
                 ) -> None:
        if num_global < 1:
            raise ValueError(f"num_global must be at least 1, got {num_global}")
        first = Recipe(global_size, tuple(global_scale), blur_p=1.0)
        other = Recipe(global_size, tuple(global_scale), blur_p=0.1, solarize_p=0.2)
        local = Recipe(local_size, tuple(local_scale), blur_p=0.5)
        self.global_views = [_View(first if i == 0 else other, mean, std) for i in range(num_global)]
        self.local_views = [_View(local, mean, std) for _ in range(num_local)]

    def recipes(self) -> Dict[str, List[Recipe]]:
        return {"global": [v.recipe for v in self.global_views],
                "local": [v.recipe for v in self.local_views]}

    def __call__(self, image, rng: Optional[random.Random] = None) -> Dict[str, List[torch.Tensor]]:
        rng = rng or random.Random(torch.randint(0, 2 ** 62, ()).item())
        return {"global_crops": [view(image, rng) for view in self.global_views],
                "local_crops": [view(image, rng) for view in self.local_views]}
