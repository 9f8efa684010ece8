"""Batched photometric augmentation on the training device (the second half of
``image_crops.cosmos_multicrop_fast``).

The loader worker does the geometry (crop, resize, flip) on uint8 and draws every random
parameter per sample; this step applies colour jitter, grayscale, Gaussian blur, solarize and
the normalisation to the whole batch as tensor ops. Each op reproduces the PIL operation that
torchvision applies to PIL images in the per-sample pipeline, on integer-valued float images
(0…255) rounded as PIL rounds, so the result equals the per-sample path up to float rounding of
the last bit before a floor (measured: tests/data/test_augment_statistics.py).
Ops on (N, 3, H, W):

* brightness / contrast / saturation: ``ImageEnhance`` = ``Image.blend(degenerate, x, f)``,
  truncated and clipped to 0…255; contrast's degenerate is the rounded mean of the L image,
  saturation's the L image; L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16 (PIL's ``convert("L")``).
* hue: PIL's RGB → HSV (8-bit H, S, V), H + int(255·hue) modulo 256, HSV → RGB.
* Gaussian blur: PIL's ``GaussianBlur(radius)``: 3 passes of an extended box blur per axis
  (horizontal passes first), 24-bit fixed-point weights, edge pixels extended.
* solarize: ``x ≥ threshold → 255 − x``; normalise: ``(x / 255 − mean) / std``.

Random parameters travel with the batch (``*_photometric``, see :data:`PARAM_COLUMNS`), so the
step is a pure function of its input: deterministic, and a resume replays it exactly. Sample
selection (which samples jitter, blur, …) is decided on the host from the CPU copy of the
parameters, so the step does not synchronise with the device.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import functional as TF

from cosmos.data.device_resize import crop_resize_flip
from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cosmos.registry import BATCH_AUGMENTS

__all__ = ["PARAM_COLUMNS", "DinoPhotometric", "adjust_brightness", "adjust_contrast",
           "adjust_saturation", "adjust_hue", "to_gray", "gaussian_blur", "solarize",
           "blur_box_parameters"]

logger = logging.getLogger(__name__)

# Columns of the (…, K) parameter rows a worker writes per view.
PARAM_COLUMNS = ("jitter_on", "order0", "order1", "order2", "order3", "brightness", "contrast",
                 "saturation", "hue", "gray_on", "blur_on", "blur_radius", "solarize_on",
                 "solarize_threshold", "flipped")  # flipped: done in the worker (a record)
COL = {name: i for i, name in enumerate(PARAM_COLUMNS)}
GROUPS = ("global", "local")


# ----------------------------------------------------------------------------- single ops
def to_gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) 0…255 → (N, 1, H, W): PIL's integer ``convert("L")`` (exact in float32)."""
    weighted = x[:, 0:1] * 19595 + x[:, 1:2] * 38470 + x[:, 2:3] * 7471 + 32768
    return torch.floor(weighted / 65536)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ``Image.blend(degenerate, x, factor)`` on 8-bit values: truncate, clip to 0…255."""
    f = factor.to(x.dtype).view(-1, 1, 1, 1)
    return torch.floor(degenerate + f * (x - degenerate)).clamp_(0, 255)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with black. ``factor`` (N,)."""
    return _blend(torch.zeros_like(x), x, factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the image's mean gray level, rounded half up."""
    mean = to_gray(x).double().mean(dim=(1, 2, 3), keepdim=True)
    degenerate = torch.floor(mean + 0.5).to(x.dtype).expand_as(x)
    return _blend(degenerate, x, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the L image."""
    return _blend(to_gray(x).expand_as(x), x, factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's PIL hue shift: 8-bit HSV, H += int32(255·factor) mod 256, back to RGB.

    PIL's conversions mix float32 and float64 arithmetic; they are followed here step by step.
    """
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, minc = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    gray = maxc == minc
    cr = torch.where(gray, torch.ones_like(maxc), maxc - minc)
    sat = cr / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    rc, gc, bc = (maxc - r) / cr, (maxc - g) / cr, (maxc - b) / cr
    hue = torch.where(r == maxc, (bc - gc).double(),
                      torch.where(g == maxc, 2.0 + rc.double() - bc.double(),
                                  4.0 + gc.double() - rc.double())).float()
    hue = torch.remainder(hue.double() / 6.0 + 1.0, 1.0).float()
    h8 = torch.where(gray, 0.0, torch.trunc(hue.double() * 255.0).clamp(0, 255))
    s8 = torch.where(gray, 0.0, torch.trunc(sat.double() * 255.0).clamp(0, 255))
    shift = torch.trunc(factor.double() * 255).remainder(256).view(-1, 1, 1)
    h8 = torch.remainder(h8 + shift, 256)
    v = maxc.double()
    i = torch.floor(h8 * 6.0 / 255.0)
    f = (h8 * 6.0 / 255.0 - i).float()
    fs = (s8 / 255.0).float()
    p = torch.floor(v * (1.0 - fs.double()) + 0.5)
    q = torch.floor(v * (1.0 - (fs * f).double()) + 0.5)
    t = torch.floor(v * (1.0 - fs.double() * (1.0 - f.double())) + 0.5)
    sector = torch.remainder(i, 6).long()
    table = torch.stack([torch.stack(c) for c in (
        (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])  # (6, 3, N, H, W)
    index = sector.unsqueeze(0).unsqueeze(0).expand(1, 3, *sector.shape)
    rgb = table.gather(0, index)[0].permute(1, 0, 2, 3)                         # (N, 3, H, W)
    rgb = torch.where((s8 == 0).unsqueeze(1), v.unsqueeze(1), rgb)
    return rgb.clamp(0, 255).to(x.dtype)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``ImageOps.solarize``: values ≥ ``threshold`` (N,) become 255 − value."""
    return torch.where(x >= threshold.to(x.dtype).view(-1, 1, 1, 1), 255 - x, x)


def blur_box_parameters(radius: Sequence[float], passes: int = 3) -> np.ndarray:
    """PIL's extended box of ``GaussianBlur(radius)``: rows (inner radius l, inner weight, outer
    weight) in 24-bit fixed point, computed in PIL's float32/float64 mix."""
    r = np.asarray(radius, dtype=np.float32)
    sigma2 = (r * r / np.float32(passes)).astype(np.float32)
    big_l = np.sqrt(12.0 * sigma2.astype(np.float64) + 1.0).astype(np.float32)
    low = np.floor((big_l.astype(np.float64) - 1.0) / 2.0).astype(np.float32)
    a = ((2 * low + 1) * (low * (low + 1) - 3 * sigma2)).astype(np.float32)
    a = (a / (6 * (sigma2 - (low + 1) * (low + 1)))).astype(np.float32)
    box = (low + a).astype(np.float32)
    inner = box.astype(np.int64)
    ww = np.floor(np.float32(1 << 24) / (box * np.float32(2) + np.float32(1))).astype(np.int64)
    fw = ((1 << 24) - (inner * 2 + 1) * ww) // 2
    return np.stack([inner, ww, fw], axis=1)


def _box_pass(x: torch.Tensor, inner: int, ww: torch.Tensor, fw: torch.Tensor) -> torch.Tensor:
    """One PIL box-blur pass along the last axis; ``ww``/``fw`` (N,) fixed-point weights."""
    n = x.shape[-1]
    padded = torch.cat([x[..., :1].expand(*x.shape[:-1], inner + 1), x,
                        x[..., -1:].expand(*x.shape[:-1], inner + 1)], dim=-1)
    acc = sum(padded[..., 1 + d: 1 + d + n] for d in range(2 * inner + 1))
    far = padded[..., :n] + padded[..., 2 * inner + 2: 2 * inner + 2 + n]
    bulk = acc.double() * ww.view(-1, 1, 1, 1) + far.double() * fw.view(-1, 1, 1, 1)
    return torch.floor((bulk + float(1 << 23)) / float(1 << 24)).to(x.dtype)


def gaussian_blur(x: torch.Tensor, radius: Sequence[float], passes: int = 3) -> torch.Tensor:
    """PIL ``ImageFilter.GaussianBlur(radius)`` per sample; ``radius`` N floats (host)."""
    params = blur_box_parameters(radius, passes)
    out = x.clone()
    for inner in np.unique(params[:, 0]):
        rows = np.nonzero(params[:, 0] == inner)[0]
        index = _to_device(rows, x.device)
        ww = _to_device(params[rows, 1], x.device, torch.float64)
        fw = _to_device(params[rows, 2], x.device, torch.float64)
        y = x.index_select(0, index)
        for _ in range(passes):
            y = _box_pass(y, int(inner), ww, fw)
        y = y.transpose(-1, -2)
        for _ in range(passes):
            y = _box_pass(y, int(inner), ww, fw)
        out.index_copy_(0, index, y.transpose(-1, -2).contiguous())
    return out


def _to_device(values: Any, device: torch.device, dtype: Optional[torch.dtype] = None
               ) -> torch.Tensor:
    """A small host array → ``device`` without waiting for the device (pinned when CUDA)."""
    t = torch.as_tensor(values, dtype=dtype)
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
_PIL_JITTER = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def apply_photometric_pil(pixels: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The same step with PIL, image by image (the per-sample path's own calls): (N, H, W, 3)
    uint8 and (N, K) → (N, H, W, 3) uint8. Faster than the tensor ops on a CPU."""
    out = np.empty_like(pixels)
    for n, row in enumerate(params):
        image = Image.fromarray(pixels[n])
        if row[COL["jitter_on"]] > 0.5:
            for position in range(4):
                op_id = int(row[COL[f"order{position}"]])
                column = ("brightness", "contrast", "saturation", "hue")[op_id]
                image = _PIL_JITTER[op_id](image, float(row[COL[column]]))
        if row[COL["gray_on"]] > 0.5:
            image = TF.to_grayscale(image, num_output_channels=3)
        if row[COL["blur_on"]] > 0.5:
            image = image.filter(ImageFilter.GaussianBlur(radius=float(row[COL["blur_radius"]])))
        if row[COL["solarize_on"]] > 0.5:
            image = ImageOps.solarize(image, threshold=int(row[COL["solarize_threshold"]]))
        out[n] = np.asarray(image)
    return out


# ----------------------------------------------------------------------------- the batch step
def apply_photometric(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) 0…255 float and (N, K) host parameters → augmented 0…255 float."""
    p = params.detach().cpu().numpy()
    dev = x.device

    def rows(mask: np.ndarray) -> Optional[torch.Tensor]:
        found = np.nonzero(mask)[0]
        return _to_device(found, dev) if len(found) else None

    def factor(index_host: np.ndarray, column: str) -> torch.Tensor:
        return _to_device(p[index_host, COL[column]], dev)

    jitter_on = p[:, COL["jitter_on"]] > 0.5
    for position in range(4):
        order = p[:, COL[f"order{position}"]]
        for op_id, column in enumerate(("brightness", "contrast", "saturation", "hue")):
            mask = jitter_on & (order == op_id)
            index = rows(mask)
            if index is None:
                continue
            x.index_copy_(0, index, _JITTER_OPS[op_id](x.index_select(0, index),
                                                       factor(np.nonzero(mask)[0], column)))
    gray = rows(p[:, COL["gray_on"]] > 0.5)
    if gray is not None:
        x.index_copy_(0, gray, to_gray(x.index_select(0, gray)).expand(-1, 3, -1, -1))
    blur_mask = p[:, COL["blur_on"]] > 0.5
    blur = rows(blur_mask)
    if blur is not None:
        x.index_copy_(0, blur, gaussian_blur(x.index_select(0, blur),
                                             p[blur_mask, COL["blur_radius"]]))
    sol_mask = p[:, COL["solarize_on"]] > 0.5
    sol = rows(sol_mask)
    if sol is not None:
        x.index_copy_(0, sol, solarize(x.index_select(0, sol),
                                       factor(np.nonzero(sol_mask)[0], "solarize_threshold")))
    return x


@BATCH_AUGMENTS.register(name="dino_photometric")
class DinoPhotometric:
    """The batch step of ``image_crops.cosmos_multicrop_fast``: uint8 crops → normalised crops.

    Reads ``{global,local}_crops_uint8`` (B, V, H, W, 3) uint8 and ``{global,local}_photometric``
    (B, V, K) float32; writes ``global_crops`` / ``local_crops`` as lists of V float32 tensors
    (B, 3, H, W) (CLIP-normalised), the batch layout of ``image_crops.cosmos_multicrop``.
    A batch of ``cosmos_multicrop_fast(resize_on_device=True)`` holds ``image_uint8``
    (B, H, W, 3) and ``{global,local}_boxes`` (B, V, 5) instead of the uint8 crops: they are
    cropped, resized and flipped here first (:meth:`crops_from_images`). Other keys pass through.

    Args:
        mean, std: normalisation (default OpenAI CLIP).
        device: where to run (``None``: the training device). A device that is not available
            falls back to the CPU with one log line.
        cpu_backend: ``"pil"`` (default: PIL image by image, the per-sample path's calls, the
            faster choice on a CPU) or ``"tensor"`` (the batched tensor ops, as on a GPU).
        resize_chunk: samples per crop-resize product when the batch holds ``image_uint8``
            (``resize_on_device=True``): bounds its float64 temporaries (≈ 20 MB per sample at
            a 768 px canvas).
    """

    def __init__(self, mean: Sequence[float] = OPENAI_CLIP_MEAN,
                 std: Sequence[float] = OPENAI_CLIP_STD, device: Optional[str] = None,
                 cpu_backend: str = "pil", resize_chunk: int = 64) -> None:
        if cpu_backend not in ("pil", "tensor"):
            raise ValueError(f"cpu_backend must be 'pil' or 'tensor', got {cpu_backend!r}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.device, self.cpu_backend = device, cpu_backend
        self.resize_chunk = max(1, int(resize_chunk))
        self._warned = False

    def resolve_device(self, default: Any) -> torch.device:
        """The configured device, or ``default``; an unavailable accelerator → CPU (logged once)."""
        wanted = torch.device(self.device) if self.device else torch.device(default)
        if wanted.type == "cpu" or _available(wanted):
            return wanted
        if not self._warned:
            logger.warning("batch augmentation asked for device %s, which is not available here; "
                           "running it on the CPU", wanted)
            self._warned = True
        return torch.device("cpu")

    @torch.no_grad()
    def __call__(self, batch: Dict[str, Any], device: Any = "cpu") -> Dict[str, Any]:
        dev = self.resolve_device(device)
        out = dict(batch)
        images = out.pop("image_uint8", None)
        if images is not None:  # cosmos_multicrop_fast(resize_on_device=True)
            for group in GROUPS:
                boxes = out.pop(f"{group}_boxes")
                out[f"{group}_crops_uint8"] = self.crops_from_images(
                    images, boxes, out[f"{group}_photometric"], dev)
        for group in GROUPS:
            crops = out.pop(f"{group}_crops_uint8", None)
            params = out.pop(f"{group}_photometric", None)
            if crops is None:
                continue
            if params is None:
                raise KeyError(f"batch has {group}_crops_uint8 but no {group}_photometric")
            out[f"{group}_crops"] = self.apply(crops, params, dev)
        return out

    def crops_from_images(self, images: torch.Tensor, boxes: torch.Tensor, params: torch.Tensor,
                          device: Any) -> torch.Tensor:
        """(B, H, W, 3) uint8 canvases + (B, V, 5) boxes (top, left, h, w, side) + (B, V, K)
        parameters (their flip column) → (B, V, side, side, 3) uint8 crops on ``device`` (on a
        CPU with ``cpu_backend="pil"``: PIL crop by crop, the worker's calls)."""
        b, v = boxes.shape[0], boxes.shape[1]
        if v == 0:
            return torch.empty((b, 0, 1, 1, 3), dtype=torch.uint8, device=device)
        size = int(boxes[0, 0, 4])
        flips = params[..., COL["flipped"]] > 0.5
        if torch.device(device).type == "cpu" and self.cpu_backend == "pil":
            return torch.from_numpy(_crops_pil(images.numpy(), boxes.numpy(), flips.numpy()))
        images = images.to(device, non_blocking=True)
        out = torch.empty((b, v, size, size, 3), dtype=torch.uint8, device=images.device)
        for start in range(0, b, self.resize_chunk):  # bounds the float64 temporaries
            rows = slice(start, start + self.resize_chunk)
            for k in range(v):
                out[rows, k] = crop_resize_flip(images[rows], boxes[rows, k, :4],
                                                flips[rows, k], size)
        return out

    def apply(self, crops: torch.Tensor, params: torch.Tensor, device: Any) -> List[torch.Tensor]:
        """(B, V, H, W, 3) uint8 + (B, V, K) → V tensors (B, 3, H, W) float32, normalised."""
        b, v = crops.shape[0], crops.shape[1]
        if v == 0:
            return []
        # view-major rows (view k of every sample together), as the model consumes them
        rows = params.transpose(0, 1).reshape(v * b, -1)
        if torch.device(device).type == "cpu" and self.cpu_backend == "pil":
            pixels = crops.transpose(0, 1).reshape(v * b, *crops.shape[2:]).numpy()
            done = apply_photometric_pil(pixels, rows.numpy())
            x = torch.from_numpy(done).permute(0, 3, 1, 2).float()
        else:
            x = crops.to(device, non_blocking=True).transpose(0, 1)
            x = x.reshape(v * b, *crops.shape[2:]).permute(0, 3, 1, 2).float()
            x = apply_photometric(x, rows)
        mean = _to_device(self.mean, x.device, torch.float32).view(1, 3, 1, 1)
        std = _to_device(self.std, x.device, torch.float32).view(1, 3, 1, 1)
        x = (x / 255 - mean) / std
        return list(x.contiguous().view(v, b, *x.shape[1:]).unbind(0))


def _crops_pil(images: np.ndarray, boxes: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """The worker's PIL crop + bicubic resize + flip, from (B, H, W, 3) canvases and (B, V, 5)
    boxes (integer boxes; a shrunk image's fractional boxes use PIL's ``box=`` argument)."""
    b, v, size = boxes.shape[0], boxes.shape[1], int(boxes[0, 0, 4])
    out = np.empty((b, v, size, size, 3), dtype=np.uint8)
    for i in range(b):
        image = Image.fromarray(images[i])
        for k in range(v):
            top, left, h, w = (float(t) for t in boxes[i, k, :4])
            if all(t.is_integer() for t in (top, left, h, w)):
                view = image.crop((int(left), int(top), int(left + w), int(top + h)))
                view = view.resize((size, size), Image.BICUBIC)
            else:
                view = image.resize((size, size), Image.BICUBIC,
                                    box=(left, top, left + w, top + h))
            if flips[i, k]:
                view = view.transpose(Image.FLIP_LEFT_RIGHT)
            out[i, k] = np.asarray(view)
    return out


def _available(device: torch.device) -> bool:
    module = getattr(torch, device.type, None)
    is_available = getattr(module, "is_available", None)
    return bool(is_available()) if callable(is_available) else False
