"""Training-free zero-shot semantic segmentation (SCLIP protocol, as in the
official ``src/seg_eval.py`` and ``src/training/clip_segmentor.py``).

Per image: keep-ratio resize → SCLIP normalisation → sliding-window dense cosine logits against
the class text embeddings → resize to the label size → ×logit_scale → softmax over query names →
max over each class's synonyms → area threshold (VOC21) → argmax → probability threshold
(with-background sets: max prob < thd → class 0). mIoU as mmseg's IoUMetric, in percent.

Evaluators take a dual encoder (``.visual`` = cosmos VisionTransformer, ``.encode_text``) or a
module holding one as ``.encoder`` (CosmosStudent); for COSMOS, pass the EMA teacher.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cosmos.evaluation.segmentation.classes import expand_synonyms
from cosmos.evaluation.segmentation.datasets import SegmentationFolder, get_spec
from cosmos.evaluation.segmentation.dense import dense_features
from cosmos.evaluation.segmentation.metrics import IGNORE_INDEX, ConfusionMatrix, per_class_iou
from cosmos.evaluation.segmentation.sliding import (normalize, resize_keep_ratio,
                                                    sliding_window_logits)
from cosmos.evaluation.scenes import require_fields
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import CosmosError
from cosmos.utils.modules import eval_mode, module_device

logger = logging.getLogger(__name__)

try:  # the 80 OpenAI ImageNet templates, when the shared module exists
    from cosmos.evaluation.classnames import OPENAI_IMAGENET_TEMPLATES as _TEMPLATES
except ImportError:  # a few of the OpenAI templates as a stand-in
    _TEMPLATES = (
        "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
        "a photo of the hard to see {}.", "a low resolution photo of the {}.",
        "a rendering of a {}.", "a cropped photo of the {}.", "a photo of a {}.",
        "a bright photo of a {}.", "a photo of the large {}.", "a photo of the small {}.",
        "itap of a {}.",
    )
DEFAULT_TEMPLATES = tuple(_TEMPLATES)

SYNTHETIC_BACKGROUND = "background, texture, pattern"


def _fill(template, name: str) -> str:
    return template(name) if callable(template) else template.format(name)


def _dual_encoder(model: nn.Module) -> nn.Module:
    if hasattr(model, "visual") and hasattr(model, "encode_text"):
        return model
    inner = getattr(model, "encoder", None)
    if inner is not None and hasattr(inner, "visual") and hasattr(inner, "encode_text"):
        return inner
    raise CosmosError(f"segmentation needs a dual encoder (.visual, .encode_text); "
                      f"got {type(model).__name__}")


@torch.no_grad()
def query_embeddings(model: nn.Module, tokenizer: Callable, queries: Sequence[str],
                     templates: Sequence = DEFAULT_TEMPLATES,
                     batch_size: int = 256) -> torch.Tensor:
    """(Q, D) float32: per query, template embeddings normalised, averaged, renormalised."""
    model = _dual_encoder(model)
    device = module_device(model)
    texts = [_fill(t, q) for q in queries for t in templates]
    emb = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[i:i + batch_size]).to(device)
        emb.append(model.encode_text(tokens, normalize=True).float())
    emb = torch.cat(emb).view(len(queries), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1)


def predict_classes(logits: torch.Tensor, query_to_class: torch.Tensor, num_classes: int,
                    logit_scale: float, prob_thd: float = 0.0,
                    area_thd: Optional[float] = None) -> torch.Tensor:
    """SCLIP post-processing. logits (Q, H, W) cosine → LongTensor (H, W) class map.

    Softmax over queries of logits·scale, max over each class's queries; with ``area_thd`` a
    non-background class whose argmax area is ≤ area_thd × all non-background argmax pixels has
    its map zeroed; argmax; pixels whose (possibly zeroed) max prob < prob_thd → 0.
    """
    probs = (logits.float() * logit_scale).softmax(0)
    idx = query_to_class.to(probs.device)
    if idx.numel() != probs.shape[0] or num_classes != int(idx.max()) + 1:
        raise CosmosError(f"{probs.shape[0]} query maps for {idx.numel()} query→class indices "
                          f"over {num_classes} classes")
    cls = torch.stack([probs[idx == c].amax(0) for c in range(num_classes)])
    if area_thd is not None:
        area = F.one_hot(cls.argmax(0), num_classes)[..., 1:].sum((0, 1)).to(cls.dtype)
        keep = (area > area_thd * area.sum()).to(cls.dtype)
        cls[1:] *= keep.view(-1, 1, 1)
    top, pred = cls.max(0)
    pred[top < prob_thd] = 0
    return pred


class _SegmentationRunner:
    """Shared loop: samples with PIL ``image`` and ``mask`` → metrics in percent."""

    def __init__(self, class_lines: Sequence[str], tokenizer: Callable, logit_scale: float,
                 prob_thd: float, area_thd: Optional[float], short_side: Optional[int],
                 slide_crop: Optional[int], slide_stride: Optional[int], use_csa: bool,
                 templates: Sequence, crop_batch_size: int, text_batch_size: int) -> None:
        self.class_lines = list(class_lines)
        self.queries, owners = expand_synonyms(self.class_lines)
        self.query_to_class = torch.tensor(owners)
        self.tokenizer, self.templates = tokenizer, list(templates)
        self.logit_scale, self.prob_thd, self.area_thd = logit_scale, prob_thd, area_thd
        self.short_side, self.use_csa = short_side, use_csa
        self.slide_crop, self.slide_stride = slide_crop, slide_stride
        self.crop_batch_size, self.text_batch_size = crop_batch_size, text_batch_size

    def predict(self, model: nn.Module, text: torch.Tensor, image) -> torch.Tensor:
        """PIL image → (H, W) class map at the image's size."""
        visual = model.visual
        device = text.device
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
        pixels = pixels.permute(2, 0, 1)
        out_size = tuple(pixels.shape[-2:])
        if self.short_side:
            pixels = resize_keep_ratio(pixels, self.short_side)
        x = normalize(pixels.to(device))
        dtype = next(visual.parameters()).dtype

        def dense_fn(crops: torch.Tensor) -> torch.Tensor:
            feats = dense_features(visual, crops.to(dtype), self.use_csa).float()
            return torch.einsum("bdhw,qd->bqhw", feats, text)

        crop = self.slide_crop or max(x.shape[-2:])
        stride = self.slide_stride or crop
        logits = sliding_window_logits(dense_fn, x, crop, stride, out_size, self.crop_batch_size)
        return predict_classes(logits, self.query_to_class, len(self.class_lines),
                               self.logit_scale, self.prob_thd, self.area_thd).cpu()

    def predictions(self, model: nn.Module,
                    samples: Iterable[Dict]) -> Iterator[Tuple[Dict, torch.Tensor]]:
        """(sample, (H, W) class map) per sample, in eval mode without gradients."""
        model = _dual_encoder(model)
        with eval_mode(model), torch.no_grad():
            text = query_embeddings(model, self.tokenizer, self.queries, self.templates,
                                    self.text_batch_size)
            for sample in samples:
                yield sample, self.predict(model, text, sample["image"])

    def run(self, model: nn.Module, samples: Iterable[Dict]) -> Dict[str, float]:
        cm = ConfusionMatrix(len(self.class_lines))
        for sample, prediction in self.predictions(model, samples):
            cm.update(prediction, sample["mask"])
        names = [line.split(",")[0].strip() for line in self.class_lines]
        return cm.compute(names)


@EVALUATORS.register(name="zeroshot_segmentation")
class SegmentationEvaluator:
    """evaluator(model) → {"mIoU", "mAcc", "aAcc", "IoU/<class>"} in percent on a benchmark.

    dataset_name: one of voc20, voc21, context59, context60, coco_object, coco_stuff171,
    cityscapes, ade20k (settings from ``datasets.DATASET_SPECS``; ``logit_scale``, ``prob_thd``,
    ``area_thd``, ``short_side`` override them when given). ``slide_crop=None`` runs each
    resized image whole.
    """

    def __init__(self, dataset_name: str, root: str, tokenizer: Callable, use_csa: bool = False,
                 max_images: Optional[int] = None, slide_crop: Optional[int] = 224,
                 slide_stride: Optional[int] = 112, templates: Optional[Sequence] = None,
                 logit_scale: Optional[float] = None, prob_thd: Optional[float] = None,
                 area_thd: Optional[float] = None, short_side: Optional[int] = None,
                 crop_batch_size: int = 16, text_batch_size: int = 256) -> None:
        self.spec = get_spec(dataset_name)
        self.dataset = SegmentationFolder(dataset_name, root, max_images)
        s = self.spec
        self.runner = _SegmentationRunner(
            s.class_lines, tokenizer,
            logit_scale=s.logit_scale if logit_scale is None else logit_scale,
            prob_thd=s.prob_thd if prob_thd is None else prob_thd,
            area_thd=s.area_thd if area_thd is None else area_thd,
            short_side=s.short_side if short_side is None else short_side,
            slide_crop=slide_crop, slide_stride=slide_stride, use_csa=use_csa,
            templates=DEFAULT_TEMPLATES if templates is None else templates,
            crop_batch_size=crop_batch_size, text_batch_size=text_batch_size)

    def predictions(self, model: nn.Module,
                    num_images: Optional[int] = None) -> Iterator[Tuple[Dict, torch.Tensor]]:
        """(sample with ``image`` and ``mask``, (H, W) predicted class map) per image."""
        count = min(num_images or len(self.dataset), len(self.dataset))
        return self.runner.predictions(model, (self.dataset[i] for i in range(count)))

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        results = self.runner.run(model, (self.dataset[i] for i in range(len(self.dataset))))
        logger.info("%s zero-shot segmentation: mIoU %.2f", self.spec.name, results["mIoU"])
        return results


def size_split_targets(mask: torch.Tensor, instances: torch.Tensor,
                       sizes: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The class map of a scene with one object group's pixels set to ``IGNORE_INDEX``.

    mask, instances: (H, W); ``instances`` = 1 + index into ``sizes`` ("large" / "small") of the
    object seen at each pixel, 0 = background. Returns ``{"small": mask without the large
    object's pixels, "dominant": mask without the small objects' pixels}``.
    """
    kinds = torch.tensor([0] + [1 if s == "large" else 2 for s in sizes], dtype=torch.long)
    if int(instances.max()) >= len(kinds) or int(instances.min()) < 0:
        raise CosmosError(f"instance id {int(instances.max())} for {len(sizes)} objects")
    kind = kinds[instances.long()]
    return {"small": mask.masked_fill(kind == 1, IGNORE_INDEX),
            "dominant": mask.masked_fill(kind == 2, IGNORE_INDEX)}


def object_group_metrics(cm: torch.Tensor) -> Dict[str, float]:
    """``mIoU`` over the shape classes (index ≥ 1; a class neither in the counted ground truth
    nor predicted there is left out) and ``pixel_acc`` = share of the group's object pixels
    predicted as their class, in percent, of a confusion matrix whose ground truth holds one
    object group (the other group's pixels ignored)."""
    iou = per_class_iou(cm)[1:]
    objects = cm[1:].sum()
    return {"mIoU": 100.0 * float(torch.nanmean(iou)) if (iou == iou).any() else float("nan"),
            "pixel_acc": 100.0 * float(cm.diagonal()[1:].sum()) / float(objects)
            if objects else float("nan")}


@EVALUATORS.register(name="synthetic_segmentation")
class SyntheticSegmentationEvaluator:
    """evaluator(model) → {"mIoU", "mAcc", "aAcc", "IoU/<class>"} in percent on SyntheticScenes,
    and with ``by_object_size`` (default) the same predictions scored per object group:

    * ``small/mIoU``, ``small/pixel_acc``: the dominant object's pixels are ignored (label 255),
      so a shape class's IoU = small-object pixels of that class predicted as it / (those pixels
      ∪ background or small-object pixels predicted as it); mean over the shape classes;
    * ``dominant/mIoU``, ``dominant/pixel_acc``: the same with the small objects' pixels ignored;
    * ``background/IoU``: the background class's IoU over all pixels (= ``IoU/background``).

    Classes: ``segmentation_classes()``, background queried as "background, texture, pattern".
    Images at native size (no resize); window = the model's image size, stride half of it
    (``slide_crop`` / ``slide_stride`` override). No probability / area thresholds. Scenes need
    ``image`` and ``mask``, and for the split ``instances`` and ``objects`` (their ``size``).
    """

    def __init__(self, dataset, tokenizer: Callable, use_csa: bool = False,
                 max_images: Optional[int] = None, slide_crop: Optional[int] = None,
                 slide_stride: Optional[int] = None, templates: Optional[Sequence] = None,
                 logit_scale: float = 40.0, crop_batch_size: int = 16,
                 text_batch_size: int = 256, by_object_size: bool = True) -> None:
        self.dataset = dataset
        self.num_images = min(max_images or len(dataset), len(dataset))
        self.fields = ("image", "mask") + (("instances", "objects") if by_object_size else ())
        if self.num_images:
            require_fields(dataset[0], self.fields, "synthetic_segmentation")
        self.by_object_size = by_object_size
        classes: List[str] = list(dataset.segmentation_classes())
        if classes[0] == "background":
            classes[0] = SYNTHETIC_BACKGROUND
        self.slide_crop, self.slide_stride = slide_crop, slide_stride
        self.runner = _SegmentationRunner(
            classes, tokenizer, logit_scale=logit_scale, prob_thd=0.0, area_thd=None,
            short_side=None, slide_crop=slide_crop, slide_stride=slide_stride, use_csa=use_csa,
            templates=DEFAULT_TEMPLATES if templates is None else templates,
            crop_batch_size=crop_batch_size, text_batch_size=text_batch_size)

    def _set_window(self, model: nn.Module) -> None:
        crop = self.slide_crop or int(_dual_encoder(model).visual.image_size)
        self.runner.slide_crop = crop
        self.runner.slide_stride = self.slide_stride or max(crop // 2, 1)

    def _samples(self, count: int) -> Iterator[Dict]:
        for i in range(count):
            sample = self.dataset[i]
            require_fields(sample, self.fields, "synthetic_segmentation")
            yield sample

    def predictions(self, model: nn.Module,
                    num_images: Optional[int] = None) -> Iterator[Tuple[Dict, torch.Tensor]]:
        """(sample with ``image`` and ``mask``, (H, W) predicted class map) per image."""
        self._set_window(model)
        count = min(num_images or self.num_images, self.num_images)
        return self.runner.predictions(model, self._samples(count))

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        self._set_window(model)
        num_classes = len(self.runner.class_lines)
        whole = ConfusionMatrix(num_classes)
        groups = {name: ConfusionMatrix(num_classes) for name in ("small", "dominant")}
        for sample, prediction in self.runner.predictions(model, self._samples(self.num_images)):
            whole.update(prediction, sample["mask"])
            if self.by_object_size:
                sizes = [o.get("size", "") for o in sample["objects"]]
                targets = size_split_targets(sample["mask"], sample["instances"], sizes)
                for name, target in targets.items():
                    groups[name].update(prediction, target)
        names = [line.split(",")[0].strip() for line in self.runner.class_lines]
        results = whole.compute(names)
        if self.by_object_size:
            split = {f"{name}/{key}": value for name, cm in groups.items()
                     for key, value in object_group_metrics(cm.matrix).items()}
            split["background/IoU"] = 100.0 * float(per_class_iou(whole.matrix)[0])
            results.update({k: v for k, v in split.items() if v == v})  # no NaN (no such pixels)
        return results
