"""Per-benchmark settings and readers for the standard folder layouts (mmseg conventions).

Layouts under ``root`` (images RGB; labels single-channel PNGs, palette indices for VOC):

* ``voc21`` / ``voc20`` — ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``, ids from
  ``ImageSets/Segmentation/val.txt``. VOC21: labels as stored (0 background, 1–20, 255 ignore).
  VOC20: ``reduce_zero_label`` (0 → 255, k → k−1).
* ``context60`` / ``context59`` — ``JPEGImages/<id>.jpg``, ``SegmentationClassContext/<id>.png``
  (mmseg's converted 60-class maps, 0 = background), ids from
  ``ImageSets/SegmentationContext/val.txt`` (mmseg / SCLIP name;
  ``ImageSets/SegmentContext/val.txt`` is accepted too). Context60: labels as stored;
  Context59: ``reduce_zero_label``.
* ``coco_object`` — ``images/val2017/<id>.jpg``, ``annotations/val2017/<id>_instanceTrainIds.png``
  (TCL / GroupViT conversion: 0 background, 1–80 things, 255 ignore); labels as stored.
* ``coco_stuff171`` — ``images/val2017/<id>.jpg``, ``annotations/val2017/<id>_labelTrainIds.png``
  (mmseg's COCO-Stuff-164k conversion: 0–170, 255 ignore); labels as stored.
* ``cityscapes`` — ``leftImg8bit/val/<city>/<id>_leftImg8bit.png``,
  ``gtFine/val/<city>/<id>_gtFine_labelTrainIds.png`` (0–18, 255 ignore); labels as stored.
* ``ade20k`` — ``images/validation/<id>.jpg``, ``annotations/validation/<id>.png`` (0 = other,
  1–150); ``reduce_zero_label`` (0 → 255, k → k−1).

Without a split file, pairs are all images of the folder with a matching label, sorted by name
(mmseg's directory scan). Label files are read as stored (PIL, no colour conversion), as mmseg's
``LoadAnnotations`` with the pillow backend does; the conversions above are mmseg's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from cosmos.evaluation.segmentation.classes import CLASS_NAMES
from cosmos.evaluation.segmentation.metrics import IGNORE_INDEX
from cosmos.utils.errors import DataError


@dataclass(frozen=True)
class SegDatasetSpec:
    """Evaluation settings of one benchmark (SCLIP configs, official ``training/seg_configs``)."""

    name: str
    class_lines: Tuple[str, ...]
    short_side: int = 336
    logit_scale: float = 40.0
    prob_thd: float = 0.0
    area_thd: Optional[float] = None
    reduce_zero_label: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_lines)


DATASET_SPECS: Dict[str, SegDatasetSpec] = {
    "voc20": SegDatasetSpec("voc20", CLASS_NAMES["voc20"], reduce_zero_label=True),
    "voc21": SegDatasetSpec("voc21", CLASS_NAMES["voc21"], logit_scale=65.0, prob_thd=0.1,
                            area_thd=0.1),
    "context59": SegDatasetSpec("context59", CLASS_NAMES["context59"], reduce_zero_label=True),
    "context60": SegDatasetSpec("context60", CLASS_NAMES["context60"], logit_scale=50.0,
                                prob_thd=0.1),
    "coco_object": SegDatasetSpec("coco_object", CLASS_NAMES["coco_object"], logit_scale=50.0,
                                  prob_thd=0.1),
    "coco_stuff171": SegDatasetSpec("coco_stuff171", CLASS_NAMES["coco_stuff171"], short_side=448),
    "cityscapes": SegDatasetSpec("cityscapes", CLASS_NAMES["cityscapes"], short_side=560),
    "ade20k": SegDatasetSpec("ade20k", CLASS_NAMES["ade20k"], reduce_zero_label=True),
}


def get_spec(name: str) -> SegDatasetSpec:
    """Settings of benchmark ``name`` (case and '-' / '_' insensitive)."""
    key = name.lower().replace("-", "_")
    if key not in DATASET_SPECS:
        raise DataError(f"unknown segmentation dataset {name!r}; known: {', '.join(DATASET_SPECS)}")
    return DATASET_SPECS[key]


def reduce_zero_label(label: torch.Tensor) -> torch.Tensor:
    """mmseg's reduce_zero_label: 0 → 255, k → k−1, 255 stays 255."""
    out = label - 1
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out


def read_label(path: str, reduce_zero: bool = False) -> torch.Tensor:
    """Label PNG → LongTensor (H, W) of stored values (palette indices for 'P' images)."""
    try:
        with Image.open(path) as img:
            arr = np.array(img)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read label map {path}: {exc}") from exc
    if arr.ndim != 2:
        raise DataError(f"label map {path} has shape {arr.shape}; expected one channel")
    label = torch.from_numpy(arr.astype(np.int64))
    return reduce_zero_label(label) if reduce_zero else label


def _read_ids(path: str) -> List[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _require_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise DataError(f"missing folder {path}")
    return path


def _split_pairs(root: str, img_dir: str, ann_dir: str, split_files: Tuple[str, ...],
                 img_ext: str, ann_ext: str) -> List[Tuple[str, str]]:
    for split in split_files:
        split_path = os.path.join(root, split)
        if os.path.isfile(split_path):
            ids = _read_ids(split_path)
            break
    else:
        raise DataError(f"missing split file {os.path.join(root, split_files[0])}")
    return [(os.path.join(root, img_dir, i + img_ext), os.path.join(root, ann_dir, i + ann_ext))
            for i in ids]


def _scan_pairs(img_dir: str, ann_dir: str, img_suffix: str, ann_suffix: str,
                recursive: bool = False) -> List[Tuple[str, str]]:
    """Every label file under ``ann_dir`` with its image (same relative stem), sorted."""
    _require_dir(img_dir)
    pairs = []
    for dirpath, _, files in os.walk(_require_dir(ann_dir)):
        rel = os.path.relpath(dirpath, ann_dir)
        if rel != "." and not recursive:
            continue
        for name in files:
            if name.endswith(ann_suffix):
                stem = name[: -len(ann_suffix)]
                img = os.path.normpath(os.path.join(img_dir, rel, stem + img_suffix))
                pairs.append((img, os.path.join(dirpath, name)))
    return sorted(pairs)


def list_pairs(name: str, root: str) -> List[Tuple[str, str]]:
    """(image path, label path) pairs of the validation split of benchmark ``name``."""
    key = get_spec(name).name
    if key in ("voc20", "voc21"):
        pairs = _split_pairs(root, "JPEGImages", "SegmentationClass",
                             ("ImageSets/Segmentation/val.txt",), ".jpg", ".png")
    elif key in ("context59", "context60"):
        pairs = _split_pairs(root, "JPEGImages", "SegmentationClassContext",
                             ("ImageSets/SegmentationContext/val.txt",
                              "ImageSets/SegmentContext/val.txt"), ".jpg", ".png")
    elif key == "coco_object":
        pairs = _scan_pairs(os.path.join(root, "images/val2017"),
                            os.path.join(root, "annotations/val2017"), ".jpg",
                            "_instanceTrainIds.png")
    elif key == "coco_stuff171":
        pairs = _scan_pairs(os.path.join(root, "images/val2017"),
                            os.path.join(root, "annotations/val2017"), ".jpg", "_labelTrainIds.png")
    elif key == "cityscapes":
        pairs = _scan_pairs(os.path.join(root, "leftImg8bit/val"), os.path.join(root, "gtFine/val"),
                            "_leftImg8bit.png", "_gtFine_labelTrainIds.png", recursive=True)
    else:  # ade20k
        pairs = _scan_pairs(os.path.join(root, "images/validation"),
                            os.path.join(root, "annotations/validation"), ".jpg", ".png")
    for img, ann in pairs:
        for path in (img, ann):
            if not os.path.isfile(path):
                raise DataError(f"{key}: missing file {path}")
    if not pairs:
        raise DataError(f"{key}: no image / label pairs found under {root}")
    return pairs


class SegmentationFolder:
    """A benchmark's validation split; item → {"image": PIL RGB, "mask": LongTensor (H, W),
    "key": image file stem}. Masks already carry the benchmark's label conversion."""

    def __init__(self, name: str, root: str, max_images: Optional[int] = None) -> None:
        self.spec = get_spec(name)
        self.root = root
        pairs = list_pairs(name, root)
        self.pairs = pairs[:max_images] if max_images is not None else pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        img_path, ann_path = self.pairs[index]
        try:
            with Image.open(img_path) as img:
                image = img.convert("RGB")
        except OSError as exc:
            raise DataError(f"cannot read image {img_path}: {exc}") from exc
        mask = read_label(ann_path, self.spec.reduce_zero_label)
        if mask.shape != (image.height, image.width):
            raise DataError(f"label {ann_path} is {tuple(mask.shape)}, image is "
                            f"{image.height}x{image.width}")
        key = os.path.splitext(os.path.basename(img_path))[0]
        return {"image": image, "mask": mask, "key": key}

    def segmentation_classes(self) -> List[str]:
        return list(self.spec.class_lines)
