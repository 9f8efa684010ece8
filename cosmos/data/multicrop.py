"""COSMOS multi-crop image views: DINO's recipe with CLIP statistics (arXiv
2412.01814 §3; official ``src/open_clip/transform.py::DataAugmentationMulticrop``).

Per image: ``num_global`` global views (default 2 × 224 px, scale (0.4, 1)) and ``num_local``
local views (default 6 × 96 px, scale (0.05, 0.4)). Every view is RandomResizedCrop (bicubic,
ratio 3/4…4/3) → RGB → flip (p 0.5) → colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8) → grayscale
(p 0.2) → PIL Gaussian blur (radius U(0.1, 2)) → [solarize at 128] → ToTensor → CLIP normalise.
Blur probability: global 1 → 1.0, global 2 → 0.1 (+ solarize p 0.2), local → 0.5; global views
beyond the second reuse global 2's recipe. ``num_local=0`` is the "no local crops" ablation.

RNG split: crop geometry, the flip and the jitter parameters come from torch's
global RNG (torchvision); the on/off gates of jitter, grayscale, blur and solarize and the blur
radius come from the ``random.Random`` passed in (the official code uses Python's ``random``).
The loader seeds both per sample, so a sample's views are replayable. ``torch_gates=True``
draws the jitter and grayscale gates from torch instead, as torchvision's ``RandomApply`` /
``RandomGrayscale`` in DINO's ``main_dino.py`` do (the reference says Python ``random``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T

from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cosmos.registry import IMAGE_CROPS

__all__ = ["ViewRecipe", "MultiCrop"]


@dataclass(frozen=True)
class ViewRecipe:
    """Parameters of one view; the ``*_p`` fields are application probabilities."""

    size: int
    scale: Tuple[float, float]
    blur_p: float
    solarize_p: float = 0.0
    flip_p: float = 0.5
    jitter_p: float = 0.8
    gray_p: float = 0.2
    jitter: Tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    blur_radius: Tuple[float, float] = (0.1, 2.0)
    solarize_threshold: int = 128


class _View:
    """One augmented view: PIL image → normalised tensor (3, size, size)."""

    def __init__(self, recipe: ViewRecipe, mean: Sequence[float], std: Sequence[float],
                 torch_gates: bool) -> None:
        self.recipe, self.torch_gates = recipe, torch_gates
        self.crop = T.RandomResizedCrop(recipe.size, scale=recipe.scale, ratio=(3 / 4, 4 / 3),
                                        interpolation=T.InterpolationMode.BICUBIC)
        self.flip = T.RandomHorizontalFlip(p=recipe.flip_p)
        self.jitter = T.ColorJitter(*recipe.jitter)
        self.gray = T.Grayscale(num_output_channels=3)
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def _gate(self, p: float, rng: Any) -> bool:
        """A jitter/grayscale on/off draw from torch or from the Python RNG (see module doc)."""
        return bool(torch.rand(1).item() < p) if self.torch_gates else rng.random() < p

    def __call__(self, image: Image.Image, rng: Any) -> torch.Tensor:
        r = self.recipe
        image = self.flip(self.crop(image).convert("RGB"))
        if self._gate(r.jitter_p, rng):
            image = self.jitter(image)
        if self._gate(r.gray_p, rng):
            image = self.gray(image)
        if rng.random() <= r.blur_p:  # the gate is drawn even when blur_p == 1, as DINO's blur does
            image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*r.blur_radius)))
        if r.solarize_p > 0 and rng.random() < r.solarize_p:  # only views with a solarize step draw
            image = ImageOps.solarize(image, threshold=r.solarize_threshold)
        return self.to_tensor(image)


@IMAGE_CROPS.register(name="cosmos_multicrop")
class MultiCrop:
    """COSMOS/DINO multi-crop policy (see the module docstring for the recipe and RNG split).

    Returns ``{"global_crops": [(3, g, g)] * num_global, "local_crops": [(3, l, l)] * num_local}``
    (float32, CLIP-normalised); the local list is empty when ``num_local == 0``.
    """

    def __init__(self, global_size: int = 224, local_size: int = 96, num_global: int = 2,
                 num_local: int = 6, global_scale: Tuple[float, float] = (0.4, 1.0),
                 local_scale: Tuple[float, float] = (0.05, 0.4),
                 mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD,
                 torch_gates: bool = False) -> None:
        if num_global < 1 or num_local < 0:
            raise ValueError(f"need num_global >= 1 and num_local >= 0, "
                             f"got {num_global}, {num_local}")
        g_scale, l_scale = _pair(global_scale, "global_scale"), _pair(local_scale, "local_scale")
        first = ViewRecipe(global_size, g_scale, blur_p=1.0)
        second = ViewRecipe(global_size, g_scale, blur_p=0.1, solarize_p=0.2)
        local = ViewRecipe(local_size, l_scale, blur_p=0.5)
        self.mean, self.std = tuple(mean), tuple(std)
        self.global_views = [_View(first if i == 0 else second, mean, std, torch_gates)
                             for i in range(num_global)]
        self.local_views = [_View(local, mean, std, torch_gates) for _ in range(num_local)]

    def recipe(self, name: str) -> ViewRecipe:
        """The recipe of view ``"global<i>"`` or ``"local<i>"`` (1-based), e.g. ``"global1"``."""
        kind, index = name.rstrip("0123456789"), name[len(name.rstrip("0123456789")):]
        views = {"global": self.global_views, "local": self.local_views}.get(kind)
        if views is None or not index or not 1 <= int(index) <= len(views):
            raise KeyError(f"no view {name!r}: have global1..global{len(self.global_views)}, "
                           f"local1..local{len(self.local_views)}")
        return views[int(index) - 1].recipe

    def __call__(self, image: Image.Image, rng: Optional[random.Random] = None
                 ) -> Dict[str, List[torch.Tensor]]:
        """Views in the official order: global 1, global 2, …, then the locals.

        Without ``rng`` the gates use Python's global ``random`` module, as the official code does.
        """
        gates: Any = random if rng is None else rng
        return {"global_crops": [view(image, gates) for view in self.global_views],
                "local_crops": [view(image, gates) for view in self.local_views]}


def _pair(value: Sequence[float], name: str) -> Tuple[float, float]:
    if len(value) != 2 or not 0 < value[0] <= value[1]:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {tuple(value)}")
    return float(value[0]), float(value[1])
