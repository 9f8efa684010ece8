"""Zero-shot image↔text retrieval on Flickr30k / COCO (official
``src/training/train.py::zeroshot_evaluate_retrieval``).

Images are decoded and embedded batch by batch (never all held decoded in memory); every caption
is tokenized on its own (77 tokens). Recall@k follows :func:`retrieval_metrics` (CLIP_benchmark).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

import torch
from PIL import Image
from torch import nn

from cosmos.evaluation.retrieval import retrieval_metrics
from cosmos.evaluation.retrieval_datasets import LAYOUTS, read_retrieval_annotations, truncate
from cosmos.evaluation.synthetic import embed_images, embed_texts
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import ConfigError, DataError
from cosmos.utils.modules import eval_mode, module_device

# Image folder relative to ``root`` when ``image_dir`` is not given.
DEFAULT_IMAGE_DIRS = {"karpathy": "", "coco": "val2017", "flickr_official": ""}


@EVALUATORS.register(name="retrieval")
class RetrievalEvaluator:
    """evaluator(model) → ``{"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", ...}`` in percent.

    Args:
        root: dataset folder; relative ``annotation`` / ``image_dir`` paths are resolved in it.
        annotation: annotation JSON (see :mod:`cosmos.evaluation.retrieval_datasets`).
        layout: "karpathy", "coco" or "flickr_official".
        split: Karpathy split ("test" default, "val"); ignored by the other layouts.
        transform: PIL image → ``{"images": (3, H, W)}`` (e.g. ``EvalCrop(224)``).
        tokenizer: list of N strings → (N, L) token ids.
        image_dir: image folder (default ``root/val2017`` for coco, ``root`` otherwise).
        max_images: evaluate on the first N images and their captions only.
    """

    def __init__(self, root: str, annotation: str, layout: str, transform: Callable,
                 tokenizer: Callable, split: str = "test", batch_size: int = 64,
                 image_dir: Optional[str] = None, max_images: Optional[int] = None) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown retrieval layout {layout!r}; "
                              f"expected one of {', '.join(LAYOUTS)}")
        if batch_size < 1:
            raise ConfigError(f"retrieval batch_size must be >= 1, got {batch_size}")
        if not os.path.isdir(root):
            raise DataError(f"retrieval dataset root not found: {root}")
        self.root, self.layout, self.split = root, layout, split
        self.annotation = os.path.join(root, annotation)  # an absolute annotation wins
        image_dir = DEFAULT_IMAGE_DIRS[layout] if image_dir is None else image_dir
        self.image_dir = os.path.join(root, image_dir)
        self.transform, self.tokenizer, self.batch_size = transform, tokenizer, batch_size
        data = read_retrieval_annotations(self.annotation, layout, split)
        if max_images is not None:
            data = truncate(data, max_images)
        paths, self.captions, owner = data
        self.image_paths: List[str] = [os.path.join(self.image_dir, p) for p in paths]
        self.text_to_image = torch.tensor(owner, dtype=torch.long)

    def _load(self, path: str) -> torch.Tensor:
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB"))["images"]
        except FileNotFoundError:
            raise DataError(f"retrieval image not found: {path}") from None
        except OSError as e:
            raise DataError(f"cannot read retrieval image {path}: {e}") from e

    @torch.no_grad()
    def image_embeddings(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        """(num_images, D) normalized embeddings, decoding ``batch_size`` images at a time."""
        out = []
        for i in range(0, len(self.image_paths), self.batch_size):
            batch = [self._load(p) for p in self.image_paths[i:i + self.batch_size]]
            out.append(embed_images(model, batch, len(batch), device))
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Dict[str, float]:
        device = module_device(model)
        with eval_mode(model):
            img = self.image_embeddings(model, device)                                 # (I, D)
            txt = embed_texts(model, self.tokenizer, self.captions, self.batch_size,
                              device)                                              # (T, D)
        return retrieval_metrics(img @ txt.T, self.text_to_image)
