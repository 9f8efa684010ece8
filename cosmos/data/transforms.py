"""Image and text crop policies for single-view training (CLIP) and evaluation.

An image policy maps a PIL image to a dict of tensors (``{"images": (3, H, W)}``); a text policy
maps a sample's captions (``{"long": [sentences], "short": [...], "raw": str}``) and a
``random.Random`` to one string (→ tokens (L,)) or a list of strings (→ tokens (n, L)).
"""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torchvision import transforms as T

from cosmos.data.text_crops import POOL_KEYS  # a pool's key names (raw → raw, raw_caption …)
from cosmos.registry import IMAGE_CROPS, TEXT_CROPS

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@IMAGE_CROPS.register(name="clip_single")
class SingleCrop:
    """OpenCLIP's training view: RandomResizedCrop (bicubic) → tensor → CLIP normalisation."""

    def __init__(self, size: int = 224, scale: Tuple[float, float] = (0.9, 1.0),
                 mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD):
        self.transform = T.Compose([
            T.RandomResizedCrop(size, scale=tuple(scale),
                                interpolation=T.InterpolationMode.BICUBIC),
            T.Lambda(_to_rgb), T.ToTensor(), T.Normalize(mean, std)])

    def __call__(self, image, rng: Optional[random.Random] = None) -> Dict[str, torch.Tensor]:
        return {"images": self.transform(image)}


@IMAGE_CROPS.register(name="clip_eval")
class EvalCrop:
    """Evaluation view: resize shortest side (bicubic) → center crop → CLIP normalisation."""

    def __init__(self, size: int = 224, mean: Sequence[float] = OPENAI_CLIP_MEAN,
                 std: Sequence[float] = OPENAI_CLIP_STD):
        self.transform = T.Compose([
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
            T.Lambda(_to_rgb), T.ToTensor(), T.Normalize(mean, std)])

    def __call__(self, image, rng: Optional[random.Random] = None) -> Dict[str, torch.Tensor]:
        return {"images": self.transform(image)}


def _to_rgb(image):
    return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image


@TEXT_CROPS.register(name="full_caption")
class FullCaption:
    """All sentences of a caption pool joined by spaces (truncated later at the context length)."""

    def __init__(self, pool: str = "long") -> None:
        self.pool = pool

    def __call__(self, captions: Dict, rng: random.Random) -> Union[str, List[str]]:
        for key in POOL_KEYS.get(self.pool, (self.pool,)):
            value = captions.get(key)
            if value:
                return value if isinstance(value, str) else " ".join(value)
        raise ValueError(f"no {self.pool!r} caption in a sample with keys {sorted(captions)}")


@TEXT_CROPS.register(name="raw_caption")
class RawCaption(FullCaption):
    """The raw (alt-text) caption only."""

    def __init__(self) -> None:
        super().__init__(pool="raw")
