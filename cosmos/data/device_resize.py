"""PIL's crop + antialiased bicubic resize + horizontal flip as batched tensor ops.

The resize half of ``image_crops.cosmos_multicrop_fast(resize_on_device=True)``: the loader
worker ships the decoded image (uint8, padded into a fixed canvas) and the crop boxes it drew;
this module crops, resizes and flips every view of the batch on the training device.

PIL's ``Image.crop(box).resize((S, S), BICUBIC)`` is separable: a horizontal pass (each output
column a weighted sum of at most ``2·ceil(2·max(scale, 1)) + 1`` input columns of the crop,
rounded and clipped to 0…255), then a vertical pass on that 8-bit result — or, in the Pillow
build measured here (13.0), the vertical pass first for crops much taller than wide
(:func:`vertical_pass_first`, found by comparing both orders with its output). Here each pass
is one batched matrix product with dense weight matrices built as PIL's ``precompute_coeffs`` builds
its coefficients (bicubic a = −0.5, support 2 × the downscale factor, taps clipped at the crop's
edges, normalised to sum 1, quantised to 22 fractional bits), in float64, so that every product
and sum is exact and the rounding is PIL's ``(sum + 2²¹) >> 22``. A flip reverses the rows of
the horizontal weights. Pixels equal PIL's for integer boxes (tests/data/test_device_resize.py);
the canvas padding is never read (weights are zero there).
"""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["bicubic_weights", "canvas_shape", "crop_resize_flip", "vertical_pass_first"]

_PRECISION = float(1 << 22)  # PIL's PRECISION_BITS = 32 - 8 - 2 for 8-bit images


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``bicubic_filter`` (a = −0.5), elementwise."""
    a = -0.5
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def bicubic_weights(start: torch.Tensor, length: torch.Tensor, out_size: int, extent: int
                    ) -> torch.Tensor:
    """PIL's resampling coefficients of crops ``[start, start + length)`` → ``out_size`` samples.

    Args:
        start, length: (N,) float64, the crop's first index and size along one axis.
        out_size: output samples per crop.
        extent: the axis' length in the canvas (weights outside the crop are 0).
    Returns:
        (N, out_size, extent) float64, each row summing to 1, on ``start``'s device.
    """
    dev, f64 = start.device, torch.float64
    scale = (length / out_size).view(-1, 1)
    filterscale = scale.clamp(min=1.0)
    support = 2.0 * filterscale
    center = (torch.arange(out_size, device=dev, dtype=f64).view(1, -1) + 0.5) * scale  # (N, S)
    lo = torch.trunc(center - support + 0.5).clamp(min=0)
    hi = torch.minimum(torch.trunc(center + support + 0.5), length.view(-1, 1))
    x = torch.arange(extent, device=dev, dtype=f64).view(1, 1, -1) - start.view(-1, 1, 1)
    inside = (x >= lo.unsqueeze(-1)) & (x < hi.unsqueeze(-1))
    w = _bicubic((x - center.unsqueeze(-1) + 0.5) / filterscale.unsqueeze(-1)) * inside
    w = w / w.sum(-1, keepdim=True)
    # PIL: (int)(±0.5 + w · 2²²), i.e. rounded half away from zero
    return torch.trunc(w * _PRECISION + torch.where(w < 0, -0.5, 0.5)) / _PRECISION


def _round_u8(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``clip8((ss + 2²¹) >> 22)`` on the exact sum ``x`` (float64)."""
    return torch.floor(x + 0.5).clamp_(0, 255)


def _windows(start: torch.Tensor, length: torch.Tensor, extent: int
             ) -> Tuple[torch.Tensor, int]:
    """First index (B,) int64 and common size of windows holding every crop, inside ``extent``."""
    first = torch.floor(start)
    size = int(torch.ceil(start + length - first).max().item()) if len(start) else 1
    size = min(max(size, 1), extent)
    return first.clamp(max=extent - size).long(), size


@torch.no_grad()
def crop_resize_flip(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
                     size: int) -> torch.Tensor:
    """Crop, resize and flip one view of every image, as PIL does on the worker.

    Only a window as large as the batch's largest crop is read from each canvas (one gather),
    so the products cost B · 3 · window area · ``size`` multiply-adds, not the canvas area.

    Args:
        images: (B, H, W, 3) uint8 canvases.
        boxes: (B, 4) float (top, left, height, width) in canvas pixels, on the host (the
            window sizes are read from it without a device synchronisation).
        flips: (B,) bool, flip the view left-right.
        size: the view's side.
    Returns:
        (B, size, size, 3) uint8 on ``images``' device.
    """
    b, h, w, _ = images.shape
    dev = images.device
    boxes = boxes.to("cpu", torch.float64)
    top0, win_h = _windows(boxes[:, 0], boxes[:, 2], h)
    left0, win_w = _windows(boxes[:, 1], boxes[:, 3], w)
    rows = (top0.view(-1, 1) + torch.arange(win_h)).to(dev, non_blocking=True)
    cols = (left0.view(-1, 1) + torch.arange(win_w)).to(dev, non_blocking=True)
    local = boxes.clone()
    local[:, 0] -= top0
    local[:, 1] -= left0
    local = local.to(dev, non_blocking=True)
    flips = flips.to(dev, torch.bool, non_blocking=True)
    wx = bicubic_weights(local[:, 1], local[:, 3], size, win_w)                   # (B, S, Ww)
    wx = torch.where(flips.view(-1, 1, 1), wx.flip(1), wx).transpose(1, 2).unsqueeze(1)
    wy = bicubic_weights(local[:, 0], local[:, 2], size, win_h).unsqueeze(1)      # (B, 1, S, Hw)
    batch = torch.arange(b, device=dev).view(-1, 1, 1)
    x = images[batch, rows.unsqueeze(-1), cols.unsqueeze(1)]                      # (B, Hw, Ww, 3)
    x = x.permute(0, 3, 1, 2).to(torch.float64)                                   # (B, 3, Hw, Ww)
    out = torch.empty((b, 3, size, size), dtype=torch.float64, device=dev)
    vertical = vertical_pass_first(boxes[:, 2], boxes[:, 3], size)
    for first_vertical in (False, True):
        picked = torch.nonzero(vertical == first_vertical).flatten()
        if len(picked) == 0:
            continue
        i = picked.to(dev, non_blocking=True)
        if first_vertical:
            out[i] = _round_u8(_round_u8(wy[i] @ x[i]) @ wx[i])
        else:
            out[i] = _round_u8(wy[i] @ _round_u8(x[i] @ wx[i]))
    return out.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def vertical_pass_first(height: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) bool: crops that Pillow (13.0, measured) resizes to ``size`` × ``size`` with the
    vertical pass first: ``height > size`` and ``height > 2 · width − size``. The order matters
    for the 8-bit rounding between the passes."""
    return (height > size) & (height > 2 * width - size)


def canvas_shape(height: int, width: int, canvas: Tuple[int, int]) -> Tuple[int, int]:
    """The (height, width) an image keeps inside ``canvas``: itself, or shrunk to fit (aspect
    kept, each side rounded, at least 1)."""
    factor = min(1.0, canvas[0] / height, canvas[1] / width)
    if factor == 1.0:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))
