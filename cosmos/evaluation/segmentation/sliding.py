"""SCLIP test-time preprocessing and sliding-window inference (official
``src/training/clip_segmentor.py``, after SCLIP).

* keep-ratio resize: scale = min(long_max / long side, short / short side) (mmcv
  ``rescale_size``), new size ``int(x · scale + 0.5)``, bilinear, rounded back to 0–255 integers
  like mmcv's uint8 cv2 resize;
* normalisation of 0–255 RGB with SCLIP's mean / std (= OpenAI CLIP's × 255);
* sliding window: crops of ``crop`` px with ``stride`` px (mmseg's grid; the last row / column is
  shifted to end at the border; an image smaller than a crop is one crop), per-crop logits
  bilinearly upsampled to the crop size, summed, divided by the overlap count, then bilinearly
  resized to the requested output size (align_corners False everywhere).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F

from cosmos.utils.errors import DataError

SCLIP_MEAN = (122.771, 116.746, 104.094)
SCLIP_STD = (68.501, 66.632, 70.323)


def keep_ratio_size(height: int, width: int, short_side: int,
                    long_max: int = 2048) -> Tuple[int, int]:
    """(new_h, new_w) with short side → ``short_side`` unless the long side would pass
    ``long_max`` (mmcv ``rescale_size`` with scale (long_max, short_side))."""
    if height < 1 or width < 1:
        raise DataError(f"image size must be positive, got {height}x{width}")
    scale = min(long_max / max(height, width), short_side / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_keep_ratio(image: torch.Tensor, short_side: int, long_max: int = 2048) -> torch.Tensor:
    """image (3, H, W) 0–255 → float (3, h, w) 0–255 integers (bilinear, no antialias)."""
    h, w = keep_ratio_size(image.shape[-2], image.shape[-1], short_side, long_max)
    if (h, w) == tuple(image.shape[-2:]):
        return image.float()
    out = F.interpolate(image[None].float(), size=(h, w), mode="bilinear", align_corners=False)
    return out[0].round().clamp_(0, 255)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) RGB 0–255 → SCLIP-normalised float."""
    mean = images.new_tensor(SCLIP_MEAN).view(3, 1, 1)
    std = images.new_tensor(SCLIP_STD).view(3, 1, 1)
    return (images.float() - mean) / std


def window_boxes(height: int, width: int, crop: int,
                 stride: int) -> List[Tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of every window, mmseg's ``slide_inference`` grid."""
    if crop < 1 or stride < 1:
        raise DataError(f"crop and stride must be >= 1, got crop={crop}, stride={stride}")
    h_grids = max(height - crop + stride - 1, 0) // stride + 1
    w_grids = max(width - crop + stride - 1, 0) // stride + 1
    boxes = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * stride + crop, height), min(j * stride + crop, width)
            boxes.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return boxes


@torch.no_grad()
def sliding_window_logits(dense_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                          crop: int = 224, stride: int = 112,
                          out_size: Optional[Tuple[int, int]] = None,
                          crop_batch_size: int = 16) -> torch.Tensor:
    """Overlap-averaged dense logits of one image.

    dense_fn: crops (n, 3, h, w) → logits (n, Q, h', w') at any resolution.
    image: (3, H, W) normalised. Returns (Q, *out_size) float32 (out_size defaults to (H, W)).
    ``crop_batch_size`` crops go through ``dense_fn`` at once (windows all share one size).
    """
    if image.dim() != 3:
        raise DataError(f"expected one (3, H, W) image, got shape {tuple(image.shape)}")
    if crop_batch_size < 1:
        raise DataError(f"crop_batch_size must be >= 1, got {crop_batch_size}")
    height, width = image.shape[-2:]
    boxes = window_boxes(height, width, crop, stride)
    preds: Optional[torch.Tensor] = None
    count = torch.zeros(1, height, width, device=image.device)
    for start in range(0, len(boxes), crop_batch_size):
        chunk = boxes[start:start + crop_batch_size]
        crops = torch.stack([image[:, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        logits = dense_fn(crops).float()
        logits = F.interpolate(logits, size=crops.shape[-2:], mode="bilinear", align_corners=False)
        if preds is None:
            preds = torch.zeros(logits.shape[1], height, width, device=image.device)
        for (y1, y2, x1, x2), crop_logits in zip(chunk, logits):
            preds[:, y1:y2, x1:x2] += crop_logits
            count[:, y1:y2, x1:x2] += 1
    preds = preds / count
    size = tuple(out_size) if out_size is not None else (height, width)
    if size != (height, width):
        preds = F.interpolate(preds[None], size=size, mode="bilinear", align_corners=False)[0]
    return preds
