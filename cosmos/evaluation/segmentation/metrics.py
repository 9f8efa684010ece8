"""Semantic-segmentation metrics from a confusion matrix, as mmseg's ``IoUMetric`` computes them.

The confusion matrix ``cm`` is (C, C) int64 with rows = ground truth, columns = prediction.
Pixels whose ground truth equals ``ignore_index`` (255) are skipped. Per-class IoU is
``TP / (GT area + predicted area - TP)``; a class absent from both ground truth and prediction has
IoU NaN and is left out of the mean (``nanmean``), exactly like mmseg.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

from cosmos.utils.errors import DataError

IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(C, C) int64 counts, rows = target class, columns = predicted class.

    pred, target: integer tensors of the same shape (e.g. (H, W)); target pixels equal to
    ``ignore_index`` are skipped. Other target or prediction values outside [0, C) are an error.
    """
    if pred.shape != target.shape:
        raise DataError(f"prediction shape {tuple(pred.shape)} != label shape "
                        f"{tuple(target.shape)}")
    pred = pred.reshape(-1).long().cpu()
    target = target.reshape(-1).long().cpu()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(f"label values must be in [0, {num_classes}) or {ignore_index}, "
                            f"found {lo if lo < 0 else hi}")
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(f"predicted class {lo if lo < 0 else hi} outside [0, {num_classes})")
    idx = target * num_classes + pred
    counts = torch.bincount(idx, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_iou(cm: torch.Tensor) -> torch.Tensor:
    """(C,) float64 IoU in [0, 1]; NaN for classes in neither ground truth nor prediction."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(1) + cm.sum(0) - tp
    return tp / union  # 0 / 0 → NaN


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """(C,) float64 recall TP / GT area; NaN for classes absent from the ground truth."""
    cm = cm.double()
    return cm.diagonal() / cm.sum(1)


def segmentation_metrics(cm: torch.Tensor,
                         class_names: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """{"mIoU", "mAcc", "aAcc"} in percent, plus ``"IoU/<name>"`` per class when names are given.

    A class absent from both ground truth and prediction has no IoU: it is left out of the means
    and of the per-class entries (so every value is a finite number, valid in JSON)."""
    iou, acc = per_class_iou(cm), per_class_accuracy(cm)
    total = float(cm.sum())
    out = {
        "mIoU": 100.0 * float(torch.nanmean(iou)) if total else float("nan"),
        "mAcc": 100.0 * float(torch.nanmean(acc)) if total else float("nan"),
        "aAcc": 100.0 * float(cm.diagonal().sum()) / total if total else float("nan"),
    }
    if class_names is not None:
        if len(class_names) != cm.shape[0]:
            raise DataError(f"{len(class_names)} class names for a {cm.shape[0]}-class matrix")
        for name, value in zip(class_names, iou.tolist()):
            if value == value:  # not NaN
                out[f"IoU/{name}"] = 100.0 * value
    return out


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix over images; ``compute()`` → metrics dict."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise DataError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (H, W) integer maps of one image (or any equal shapes)."""
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, float]:
        return segmentation_metrics(self.matrix, class_names)
