"""Zero-shot segmentation overlays: image | prediction | ground truth, with a class legend and the
per-image pixel accuracy / mIoU.

``render_overlay`` draws one image's maps; ``segmentation_samples`` runs a segmentation
evaluator's own per-image pipeline (``_SegmentationRunner.predict``: resize, normalise, sliding
window dense logits, SCLIP post-processing) on the first images of its dataset and renders each.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from cosmos.evaluation.segmentation.metrics import (IGNORE_INDEX, confusion_matrix,
                                                    segmentation_metrics)
from cosmos.utils.errors import CosmosError, DataError
from cosmos.visualization.curves import save_figure

ArrayLike = Union[np.ndarray, torch.Tensor]

OVERLAY_DPI = 100
OVERLAY_INCHES = (12.0, 5.0)  # every overlay PNG is 1200 x 500 px
OVERLAY_ALPHA = 0.6           # weight of the class colour over the image
MAX_LEGEND = 24               # classes in the legend (the largest ones when more are present)

# 20 well-separated colours for classes 0–19, then a deterministic bit-interleaved palette
# (the PASCAL VOC scheme) for the rest.
_BASE_COLOURS = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
    (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200),
    (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
)


def palette(num_classes: int = 256) -> np.ndarray:
    """(num_classes, 3) uint8 fixed class colours; class 0 (background) is black."""
    out = np.zeros((max(num_classes, len(_BASE_COLOURS)), 3), dtype=np.uint8)
    out[:len(_BASE_COLOURS)] = _BASE_COLOURS
    for c in range(len(_BASE_COLOURS), len(out)):
        r = g = b = 0
        label = c
        for shift in range(7, -1, -1):
            r |= ((label >> 0) & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        out[c] = (r, g, b)
    return out[:num_classes]


def colorize(image: np.ndarray, labels: np.ndarray, colours: np.ndarray,
             ignore_index: int = IGNORE_INDEX, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """image (H, W, 3) uint8, labels (H, W) → (H, W, 3) uint8 ``(1-α)·image + α·colour``;
    ``ignore_index`` pixels keep the image."""
    out = image.astype(np.float32)
    keep = labels != ignore_index
    out[keep] = (1 - alpha) * out[keep] + alpha * colours[labels[keep]].astype(np.float32)
    return np.rint(out).clip(0, 255).astype(np.uint8)


def _as_image(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise DataError(f"image must be a PIL image or an (H, W, 3) uint8 array, got "
                        f"{arr.dtype} array of shape {arr.shape}")
    return arr


def _as_labels(labels: ArrayLike, name: str, shape: Tuple[int, int], num_classes: int,
               ignore_index: int) -> np.ndarray:
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} must be an (H, W) integer array, got {arr.dtype} array of "
                        f"shape {arr.shape}")
    if arr.shape != shape:
        raise DataError(f"{name} is {arr.shape[0]}x{arr.shape[1]}, the image {shape[0]}x{shape[1]}")
    valid = arr[arr != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
        bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
        raise DataError(f"{name} has class {bad}, outside [0, {num_classes}) and not the "
                        f"ignore index {ignore_index}")
    return arr.astype(np.int64)


def image_scores(prediction: np.ndarray, ground_truth: np.ndarray, num_classes: int,
                 ignore_index: int = IGNORE_INDEX) -> Dict[str, float]:
    """Per-image ``{"aAcc", "mIoU", "mAcc"}`` in percent (the evaluator's metric on one image;
    classes absent from both maps are left out)."""
    cm = confusion_matrix(torch.from_numpy(prediction), torch.from_numpy(ground_truth),
                          num_classes, ignore_index)
    return segmentation_metrics(cm)


def render_overlay(image: Union[Image.Image, np.ndarray], prediction: ArrayLike,
                   ground_truth: Optional[ArrayLike], class_names: Sequence[str], out_path: str,
                   ignore_index: int = IGNORE_INDEX, title: Optional[str] = None) -> str:
    """Write a PNG (:data:`OVERLAY_INCHES` at :data:`OVERLAY_DPI`) of image | prediction |
    ground truth (two panels without ground truth), the present classes as a legend, and the
    per-image pixel accuracy and mIoU in the title. Returns ``out_path``.

    image: PIL or (H, W, 3) uint8; prediction, ground_truth: (H, W) class indices in
    [0, len(class_names)) or ``ignore_index``; class names may carry synonyms ("a, b": "a" shown).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = [str(n).split(",")[0].strip() for n in class_names]
    if not names:
        raise DataError("class_names is empty")
    img = _as_image(image)
    shape = img.shape[:2]
    pred = _as_labels(prediction, "prediction", shape, len(names), ignore_index)
    gt = None if ground_truth is None else _as_labels(ground_truth, "ground truth", shape,
                                                      len(names), ignore_index)
    colours = palette(max(len(names), 1))
    panels = [("image", img), ("prediction", colorize(img, pred, colours, ignore_index))]
    heading = [title] if title else []
    if gt is not None:
        panels.append(("ground truth", colorize(img, gt, colours, ignore_index)))
        scores = image_scores(pred, gt, len(names), ignore_index)
        heading.append(f"pixel accuracy {scores['aAcc']:.1f}%  ·  mIoU {scores['mIoU']:.1f}%")

    fig = Figure(figsize=OVERLAY_INCHES, dpi=OVERLAY_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, pixels) in zip(axes, panels):
        ax.imshow(pixels, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if heading:
        fig.suptitle("\n".join(heading), fontsize=11)

    maps = [pred] + ([gt] if gt is not None else [])
    present, counts = np.unique(np.concatenate([m.ravel() for m in maps]), return_counts=True)
    keep = present != ignore_index
    present, counts = present[keep], counts[keep]
    shown = sorted(present[np.argsort(-counts, kind="stable")][:MAX_LEGEND].tolist())
    handles = [Patch(facecolor=colours[c] / 255.0, edgecolor="0.3", label=f"{c} {names[c]}")
               for c in shown]
    if len(present) > len(shown):
        handles.append(Patch(facecolor="white", edgecolor="white",
                             label=f"+{len(present) - len(shown)} more"))
    if any((m == ignore_index).any() for m in maps):
        handles.append(Patch(facecolor="white", edgecolor="0.3", label=f"{ignore_index} ignored"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8),
                   fontsize=8, frameon=False)
    return save_figure(fig, out_path)


# ---------------------------------------------------------------------- evaluator samples
def _as_evaluator(evaluator_or_config_node: Any) -> Any:
    """An evaluator, or a LazyCall config node that builds one."""
    obj = evaluator_or_config_node
    if isinstance(obj, Mapping) or hasattr(obj, "_target_"):
        from cosmos.config import instantiate
        try:
            obj = instantiate(obj)
        except CosmosError:
            raise
        except Exception as exc:  # noqa: BLE001 - a config node that cannot be built
            raise CosmosError(f"cannot build the segmentation evaluator from the config node: "
                              f"{type(exc).__name__}: {exc}") from exc
    if getattr(obj, "runner", None) is None or getattr(obj, "dataset", None) is None:
        raise CosmosError(f"{type(obj).__name__} is not a segmentation evaluator (needs .runner "
                          f"and .dataset: zeroshot_segmentation or synthetic_segmentation)")
    return obj


def segmentation_predictions(encoder: torch.nn.Module, evaluator_or_config_node: Any,
                             num_images: int) -> Iterator[Tuple[Dict[str, Any], torch.Tensor]]:
    """(sample, prediction (H, W) LongTensor) for the first ``num_images`` images of the
    evaluator's dataset, predicted exactly as the evaluator does (its ``predictions``).
    ``sample`` has ``image`` and ``mask``."""
    if num_images < 1:
        raise CosmosError(f"num_images must be >= 1, got {num_images}")
    return _as_evaluator(evaluator_or_config_node).predictions(encoder, num_images)


def segmentation_samples(encoder: torch.nn.Module, evaluator_or_config_node: Any, num_images: int,
                         out_dir: str) -> List[str]:
    """Overlays ``<out_dir>/seg_000.png`` … of the first ``num_images`` images of a segmentation
    evaluator (``zeroshot_segmentation`` / ``synthetic_segmentation``, or its config node)
    predicted by ``encoder`` (a dual encoder, or a module holding one as ``.encoder``)."""
    evaluator = _as_evaluator(evaluator_or_config_node)
    class_lines = evaluator.runner.class_lines
    ignore = getattr(evaluator.runner, "ignore_index", IGNORE_INDEX)
    paths = []
    for i, (sample, pred) in enumerate(segmentation_predictions(encoder, evaluator, num_images)):
        key = sample.get("key")
        paths.append(render_overlay(sample["image"], pred, sample.get("mask"), class_lines,
                                    os.path.join(out_dir, f"seg_{i:03d}.png"), ignore,
                                    title=str(key) if key is not None else None))
    return paths
