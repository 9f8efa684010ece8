"""COSMOS multi-crop split in two: geometry on uint8 in the loader worker, photometric ops
batched on the training device (``batch_augments.dino_photometric``).

Same recipe, same random draws as ``image_crops.cosmos_multicrop`` (see cosmos/data/multicrop.py):
per sample a ``torch.Generator`` is seeded with the number the per-sample path passes to
``torch.manual_seed``, and every draw (crop box, flip, jitter order and factors from torch; the
jitter / grayscale / blur / solarize gates and the blur radius from the ``random.Random``) is
made in the same order. So for the same seed both paths use identical crop boxes and parameters;
the pixels agree up to the rounding documented in cosmos/data/photometric.py. The crop and the
bicubic resize are PIL's, as torchvision's ``RandomResizedCrop`` on PIL images does them.

Per sample: ``{"global_crops_uint8": (G, g, g, 3) uint8, "global_photometric": (G, K) float32,
"local_crops_uint8": (L, l, l, 3) uint8, "local_photometric": (L, K)}``; collated to (B, …) and
turned into ``global_crops`` / ``local_crops`` by the batch step. With ``resize_on_device=True``
the worker skips the pixel work (the largest cost at 512 px: the bicubic downscaling of every
crop) and ships the decoded image plus the crop boxes instead of the crops; the batch step then
does the crop, resize and flip too (same pixels, see cosmos/data/device_resize.py).
"""
from __future__ import annotations

import math
import random
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from cosmos.data.device_resize import canvas_shape
from cosmos.data.multicrop import MultiCrop, ViewRecipe
from cosmos.data.photometric import COL, PARAM_COLUMNS
from cosmos.registry import IMAGE_CROPS

__all__ = ["FastMultiCrop", "crop_box"]

# torchvision's float32 log-ratio bounds, as Python floats (uniform_ takes doubles)
_LOG_RATIO = tuple(float(v) for v in torch.log(torch.tensor((3 / 4, 4 / 3))))


def _uniform(gen: torch.Generator, low: float, high: float, buf: torch.Tensor) -> float:
    """``float(torch.empty(1).uniform_(low, high))`` from ``gen``, reusing ``buf`` (1,)."""
    return buf.uniform_(low, high, generator=gen).item()


def crop_box(width: int, height: int, scale: Tuple[float, float], gen: torch.Generator,
             buf: Optional[torch.Tensor] = None) -> Tuple[int, int, int, int]:
    """``RandomResizedCrop.get_params`` (ratio 3/4…4/3) drawing from ``gen``: (top, left, h, w).

    The same draws, in the same order and precision, as torchvision's (which uses the global
    generator); ``buf`` is a reusable (1,) float32 tensor.
    """
    buf = torch.empty(1) if buf is None else buf
    area = height * width
    for _ in range(10):
        target_area = area * _uniform(gen, scale[0], scale[1], buf)
        aspect = torch.exp(buf.uniform_(*_LOG_RATIO, generator=gen)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=gen).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=gen).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        h, w = height, int(round(height * (4 / 3)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@IMAGE_CROPS.register(name="cosmos_multicrop_fast")
class FastMultiCrop:
    """The worker half of the fast COSMOS multi-crop (module docstring); arguments as
    ``image_crops.cosmos_multicrop`` except ``mean``/``std``, which belong to the batch step
    ``batch_augments.dino_photometric`` (``dataloader.augment`` in the configs). Also:

    Args:
        resize_on_device: ``False`` (default): crop, resize and flip here with PIL (the output
            above). ``True``: only decode and draw here; ship ``image_uint8`` (the image in a
            zero canvas) and ``{global,local}_boxes`` (V, 5) float64 (top, left, height, width,
            output side); the batch step crops, resizes and flips with PIL's arithmetic
            (cosmos/data/device_resize.py), identical pixels for images that fit the canvas.
        canvas: (height, width) of that canvas; a larger image is first shrunk to fit with
            PIL's bicubic resize (its boxes scaled alike), so its crops are resampled twice.
    """

    draws_torch_seed = True  # the loaders skip their torch.manual_seed; this draws its own seed

    def __init__(self, global_size: int = 224, local_size: int = 96, num_global: int = 2,
                 num_local: int = 6, global_scale: Tuple[float, float] = (0.4, 1.0),
                 local_scale: Tuple[float, float] = (0.05, 0.4),
                 torch_gates: bool = False, resize_on_device: bool = False,
                 canvas: Tuple[int, int] = (768, 768)) -> None:
        recipe = MultiCrop(global_size, local_size, num_global, num_local, global_scale,
                           local_scale, torch_gates=torch_gates)
        self.global_recipes = [v.recipe for v in recipe.global_views]
        self.local_recipes = [v.recipe for v in recipe.local_views]
        self.global_size, self.local_size = int(global_size), int(local_size)
        self.torch_gates = torch_gates
        self.resize_on_device = bool(resize_on_device)
        self.canvas = (int(canvas[0]), int(canvas[1]))
        if min(self.canvas) < 1:
            raise ValueError(f"canvas must be two positive sides (height, width), got {canvas}")
        self._gen: Optional[torch.Generator] = None
        self._buf = torch.empty(1)

    def __getstate__(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_gen", "_buf")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state, _gen=None, _buf=torch.empty(1))

    def _gate(self, p: float, rng: Any, gen: torch.Generator) -> bool:
        if self.torch_gates:
            return bool(torch.rand(1, generator=gen).item() < p)
        return rng.random() < p

    def _view(self, image: Image.Image, r: ViewRecipe, rng: Any, gen: torch.Generator,
              out: Optional[np.ndarray], params: np.ndarray, box: np.ndarray) -> None:
        buf = self._buf
        top, left, h, w = crop_box(image.width, image.height, r.scale, gen, buf)
        box[:] = (top, left, h, w, r.size)
        flip = torch.rand(1, generator=gen).item() < r.flip_p
        params[COL["flipped"]] = float(flip)
        if out is not None:  # resize_on_device: the batch step does these pixels
            view = image.crop((left, top, left + w, top + h)).resize((r.size, r.size),
                                                                     Image.BICUBIC)
            if view.mode != "RGB":
                view = view.convert("RGB")
            if flip:
                view = view.transpose(Image.FLIP_LEFT_RIGHT)
            out[...] = np.asarray(view)
        if self._gate(r.jitter_p, rng, gen):
            params[COL["jitter_on"]] = 1
            params[COL["order0"]: COL["order3"] + 1] = torch.randperm(4, generator=gen).numpy()
            b, c, s, hue = r.jitter
            params[COL["brightness"]] = _uniform(gen, max(0.0, 1 - b), 1 + b, buf)
            params[COL["contrast"]] = _uniform(gen, max(0.0, 1 - c), 1 + c, buf)
            params[COL["saturation"]] = _uniform(gen, max(0.0, 1 - s), 1 + s, buf)
            params[COL["hue"]] = _uniform(gen, -hue, hue, buf)
        params[COL["gray_on"]] = float(self._gate(r.gray_p, rng, gen))
        if rng.random() <= r.blur_p:
            params[COL["blur_on"]] = 1
            params[COL["blur_radius"]] = rng.uniform(*r.blur_radius)
        if r.solarize_p > 0 and rng.random() < r.solarize_p:
            params[COL["solarize_on"]] = 1
        params[COL["solarize_threshold"]] = r.solarize_threshold

    def __call__(self, image: Image.Image, rng: Optional[random.Random] = None
                 ) -> Dict[str, torch.Tensor]:
        """Views in the official order (global 1, global 2, …, locals); see the module doc."""
        gates: Any = random if rng is None else rng
        if self._gen is None:
            self._gen = torch.Generator()
        gen = self._gen
        gen.manual_seed(gates.getrandbits(63))
        out: Dict[str, torch.Tensor] = {}
        on_device = self.resize_on_device
        for group, recipes, size in (("global", self.global_recipes, self.global_size),
                                     ("local", self.local_recipes, self.local_size)):
            pixels = None if on_device else np.empty((len(recipes), size, size, 3), np.uint8)
            params = np.zeros((len(recipes), len(PARAM_COLUMNS)), dtype=np.float32)
            boxes = np.zeros((len(recipes), 5), dtype=np.float64)
            for k, recipe in enumerate(recipes):
                self._view(image, recipe, gates, gen, None if pixels is None else pixels[k],
                           params[k], boxes[k])
            if pixels is not None:
                out[f"{group}_crops_uint8"] = torch.from_numpy(pixels)
            else:
                out[f"{group}_boxes"] = torch.from_numpy(boxes)
            out[f"{group}_photometric"] = torch.from_numpy(params)
        if on_device:
            self._to_canvas(image, out)
        return out

    def _to_canvas(self, image: Image.Image, out: Dict[str, torch.Tensor]) -> None:
        """``out["image_uint8"]``: the image at the top left of a zero (H, W, 3) canvas; an image
        larger than the canvas is shrunk to fit (PIL bicubic) and its boxes scaled with it."""
        height, width = canvas_shape(image.height, image.width, self.canvas)
        if (height, width) != (image.height, image.width):
            factors = torch.tensor([height / image.height, width / image.width] * 2,
                                   dtype=torch.float64)
            for group in ("global", "local"):
                out[f"{group}_boxes"][:, :4] *= factors
            image = image.resize((width, height), Image.BICUBIC)
        if image.mode != "RGB":
            image = image.convert("RGB")
        canvas = torch.zeros((*self.canvas, 3), dtype=torch.uint8)
        canvas.numpy()[:height, :width] = np.asarray(image)
        out["image_uint8"] = canvas


def views_of(sample: Dict[str, torch.Tensor]) -> Dict[str, List[torch.Tensor]]:
    """One sample's output run through the batch step on the CPU (for tests and figures)."""
    from cosmos.data.photometric import DinoPhotometric
    batch = {k: v.unsqueeze(0) for k, v in sample.items()}
    done = DinoPhotometric()(batch)
    return {k: [t[0] for t in done[k]] for k in ("global_crops", "local_crops")}
