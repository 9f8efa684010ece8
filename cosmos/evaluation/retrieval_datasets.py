"""Annotation readers for zero-shot image↔text retrieval benchmarks.

Every reader returns ``(image_paths, captions, text_to_image)``: image paths relative to the image
folder, one entry per caption, and ``text_to_image[t]`` = index in ``image_paths`` of caption ``t``.

Layouts:
- ``karpathy``: ``dataset_flickr30k.json`` / ``dataset_coco.json``
  (``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}]}]}``), one split.
- ``flickr_official``: the ``flickr30k_val.json`` read by the official COSMOS code. Assumed layout
  (the one shipped with ExplainableML/flair, which COSMOS reuses): a JSON list of
  ``{"image": relative path, "caption": [str, ...]}`` (a single string caption is also accepted).
- ``coco``: ``captions_val2017.json`` (``images`` with ``id``/``file_name``; ``annotations`` with
  ``image_id``/``caption``); all captions are used (~5 per image), images in annotation order.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

from cosmos.utils.errors import ConfigError, DataError

RetrievalData = Tuple[List[str], List[str], List[int]]

LAYOUTS = ("karpathy", "coco", "flickr_official")


def _load_json(path: str) -> Any:
    if not os.path.isfile(path):
        raise DataError(f"retrieval annotation file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read retrieval annotation {path}: {e}") from e


def read_karpathy(annotation: str, split: str = "test") -> RetrievalData:
    """Karpathy JSON: images of ``split`` ("test", "val", "train", "restval") in file order."""
    data = _load_json(annotation)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{annotation}: expected a Karpathy JSON with an 'images' list")
    paths: List[str] = []
    captions: List[str] = []
    owner: List[int] = []
    for entry in data["images"]:
        if entry.get("split") != split:
            continue
        try:
            name = entry["filename"]
            sentences = [s["raw"] for s in entry["sentences"]]
        except (KeyError, TypeError) as e:
            raise DataError(f"{annotation}: image entry without 'filename' or "
                            f"'sentences[].raw': {e}") from e
        index = len(paths)
        paths.append(os.path.join(entry["filepath"], name) if entry.get("filepath") else name)
        captions.extend(sentences)
        owner.extend([index] * len(sentences))
    if not paths:
        raise DataError(f"{annotation}: no images with split {split!r}")
    return paths, captions, owner


def read_flickr_official(annotation: str) -> RetrievalData:
    """COSMOS/FLAIR ``flickr30k_val.json``: a list of ``{"image": path, "caption": [str, ...]}``."""
    data = _load_json(annotation)
    if not isinstance(data, list):
        raise DataError(f"{annotation}: expected a JSON list of {{'image', 'caption'}} entries")
    paths: List[str] = []
    captions: List[str] = []
    owner: List[int] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "image" not in entry or "caption" not in entry:
            raise DataError(f"{annotation}: entry {i} lacks 'image' or 'caption'")
        caps = entry["caption"]
        caps = [caps] if isinstance(caps, str) else list(caps)
        paths.append(entry["image"])
        captions.extend(caps)
        owner.extend([i] * len(caps))
    if not paths:
        raise DataError(f"{annotation}: no entries")
    return paths, captions, owner


def read_coco_captions(annotation: str) -> RetrievalData:
    """COCO ``captions_<split>.json``: every caption of every listed image."""
    data = _load_json(annotation)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{annotation}: expected COCO captions JSON ('images', 'annotations')")
    paths: List[str] = []
    index_of: Dict[Any, int] = {}
    for img in data["images"]:
        index_of[img["id"]] = len(paths)
        paths.append(img["file_name"])
    captions: List[str] = []
    owner: List[int] = []
    for ann in data["annotations"]:
        if ann["image_id"] not in index_of:
            raise DataError(f"{annotation}: caption {ann.get('id')} refers to unknown "
                            f"image_id {ann['image_id']}")
        captions.append(ann["caption"].strip())
        owner.append(index_of[ann["image_id"]])
    if not paths:
        raise DataError(f"{annotation}: no images")
    return paths, captions, owner


def read_retrieval_annotations(annotation: str, layout: str, split: str = "test") -> RetrievalData:
    """Dispatch on ``layout`` in :data:`LAYOUTS` (``split`` is used by ``karpathy`` only)."""
    if layout == "karpathy":
        return read_karpathy(annotation, split)
    if layout == "coco":
        return read_coco_captions(annotation)
    if layout == "flickr_official":
        return read_flickr_official(annotation)
    raise ConfigError(f"unknown retrieval layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def truncate(data: RetrievalData, max_images: int) -> RetrievalData:
    """Keep the first ``max_images`` images and only their captions."""
    paths, captions, owner = data
    keep = [t for t, i in enumerate(owner) if i < max_images]
    return paths[:max_images], [captions[t] for t in keep], [owner[t] for t in keep]
