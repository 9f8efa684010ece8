"""Zero-shot image classification with prompt ensembles (official
``src/training/zero_shot.py``).

Class weight w_c = normalize(mean_t normalize(text(template_t(name_c)))); logits = img @ Wᵀ
(the scale 100 of the official code does not change the ranking). Top-5 is reported only when
there are at least 5 classes.

Dataset splits (:func:`build_classification_dataset`, torchvision classes, ``download=False``):
official test splits where they exist; Caltech101 and SUN397 have none, so, like the official
code, a random split is drawn with a seeded ``torch.Generator``:
- caltech101: sizes round(n·3000/8677) / rest (= 3000 / 5677 on the full 8,677 images), seed 3072;
- sun397: sizes round(n·19850/108754) train / same val / rest test (= 19850 / 19850 / 69054),
  seed 3072 + crc32(b"sun397") % 2048 (= 3072 + 575 = 3647). The official seed
  ``3072 + hash("sun397") % 2048`` uses Python's per-process randomized string hash (a bug),
  so its split cannot be reproduced; crc32 is a stable stand-in. The draw equals
``random_split(ds, sizes, generator=torch.Generator().manual_seed(seed))``.
Sample order before the split is made deterministic (SUN397 image files are sorted).
"""
from __future__ import annotations

import os
import zlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from cosmos.evaluation.classnames import DATASET_CLASSNAMES, DATASET_TEMPLATES
from cosmos.evaluation.synthetic import embed_texts
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import ConfigError, DataError
from cosmos.utils.modules import eval_mode, module_device

CLASSIFICATION_DATASETS = ("imagenet", "cifar10", "cifar100", "food101", "stanford_cars",
                           "fgvc_aircraft", "dtd", "oxford_pets", "flowers102", "caltech101",
                           "sun397")
CALTECH101_SEED = 3072
SUN397_SEED = 3072 + zlib.crc32(b"sun397") % 2048

# Where torchvision expects each dataset under ``root`` (for the missing-data message).
_EXPECTED = {
    "imagenet": "val", "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
    "food101": "food-101", "stanford_cars": "stanford_cars", "fgvc_aircraft": "fgvc-aircraft-2013b",
    "dtd": "dtd", "oxford_pets": "oxford-iiit-pet", "flowers102": "flowers-102",
    "caltech101": "caltech101/101_ObjectCategories", "sun397": "SUN397",
}


def _seeded_split(dataset: Dataset, fractions: Sequence[float], part: int, seed: int) -> Subset:
    """Part ``part`` of a random split whose first parts have round(n·fraction) samples."""
    n = len(dataset)
    sizes = [int(round(n * f)) for f in fractions]
    sizes.append(n - sum(sizes))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    start = sum(sizes[:part])
    return Subset(dataset, perm[start:start + sizes[part]])


class Caltech101Categories(Dataset):
    """Caltech101 (PIL image, category index), same sample order as torchvision's ``Caltech101``.

    Categories = sorted folders of ``root/caltech101/101_ObjectCategories`` minus
    ``BACKGROUND_Google``; images in sorted file order. (torchvision's class imports scipy in
    ``__getitem__`` even for category targets; this reader does not.)
    """

    def __init__(self, root: str) -> None:
        folder = os.path.join(root, _EXPECTED["caltech101"])
        self.categories = sorted(c for c in os.listdir(folder)
                                 if c != "BACKGROUND_Google"
                                 and os.path.isdir(os.path.join(folder, c)))
        self.samples = [(os.path.join(folder, c, f), label)
                        for label, c in enumerate(self.categories)
                        for f in sorted(os.listdir(os.path.join(folder, c))) if f.endswith(".jpg")]
        self.classes = self.categories

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        with Image.open(path) as img:
            return img.convert("RGB"), label


def build_classification_dataset(name: str, root: str, split: str = "test") -> Dataset:
    """A torch Dataset of (PIL image, int label) for ``name`` in :data:`CLASSIFICATION_DATASETS`.

    ``split``: "test" (default; ImageNet: the ``root/val`` ImageFolder, classes = sorted wnids),
    "train" (oxford_pets: "trainval"), or "val" where torchvision has one (sun397, dtd, flowers102,
    fgvc_aircraft, stanford_cars has none). Missing data → one-line :class:`DataError`.
    """
    import torchvision.datasets as tvd

    if name not in CLASSIFICATION_DATASETS:
        raise ConfigError(f"unknown classification dataset {name!r}; expected one of "
                          f"{', '.join(CLASSIFICATION_DATASETS)}")
    train = split == "train"
    expected = os.path.join(root, "train" if name == "imagenet" and train else _EXPECTED[name])
    if not os.path.exists(expected):
        raise DataError(f"{name}: data not found, expected {expected} (download is disabled)")
    try:
        if name == "imagenet":
            return tvd.ImageFolder(expected)
        if name == "cifar10":
            return tvd.CIFAR10(root, train=train, download=False)
        if name == "cifar100":
            return tvd.CIFAR100(root, train=train, download=False)
        if name == "food101":
            return tvd.Food101(root, split=split, download=False)
        if name == "stanford_cars":
            return tvd.StanfordCars(root, split=split, download=False)
        if name == "fgvc_aircraft":
            return tvd.FGVCAircraft(root, split=split, annotation_level="variant", download=False)
        if name == "dtd":
            return tvd.DTD(root, split=split, download=False)
        if name == "oxford_pets":
            return tvd.OxfordIIITPet(root, split="trainval" if train else split, download=False)
        if name == "flowers102":
            return tvd.Flowers102(root, split=split, download=False)
        if name == "caltech101":
            full = Caltech101Categories(root)
            parts = {"train": 0, "test": 1}
            if split not in parts:
                raise ConfigError(f"caltech101 split must be 'train' or 'test', got {split!r}")
            return _seeded_split(full, [3000 / 8677], parts[split], CALTECH101_SEED)
        # sun397
        full = tvd.SUN397(root, download=False)
        order = sorted(range(len(full._image_files)), key=lambda i: str(full._image_files[i]))
        full._image_files = [full._image_files[i] for i in order]
        full._labels = [full._labels[i] for i in order]
        parts = {"train": 0, "val": 1, "test": 2}
        if split not in parts:
            raise ConfigError(f"sun397 split must be 'train', 'val' or 'test', got {split!r}")
        return _seeded_split(full, [19850 / 108754, 19850 / 108754], parts[split], SUN397_SEED)
    except (RuntimeError, FileNotFoundError) as e:
        raise DataError(f"{name}: cannot load {split!r} split from {root} ({e})") from e


def _base(dataset: Any) -> Any:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def dataset_classnames(name: str, dataset: Optional[Dataset] = None) -> List[str]:
    """Prompt class names: the stored list, else the dataset's ``classes`` ("_", "/" → " ")."""
    if name in DATASET_CLASSNAMES:
        return list(DATASET_CLASSNAMES[name])
    classes = getattr(_base(dataset), "classes", None) if dataset is not None else None
    if not classes:
        raise ConfigError(f"no class names for dataset {name!r}; pass classnames explicitly")
    return [" ".join(c.replace("_", " ").replace("/", " ").split()) for c in classes]


class _Transformed(Dataset):
    """(PIL image, label) → (transform(image)["images"] (3, H, W), label)."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, label = self.dataset[i]
        return self.transform(image.convert("RGB"))["images"], int(label)


@EVALUATORS.register(name="zeroshot_classification")
class ZeroShotClassifier:
    """evaluator(model) → ``{"top1", "top5"}`` in percent (``top5`` only with ≥ 5 classes).

    Args:
        dataset: torch Dataset of (PIL image, int label), or a mapping
            ``{"name", "root", "split"?}`` passed to :func:`build_classification_dataset`.
        classnames: one name per label (default: :func:`dataset_classnames` for a named dataset).
        templates: format strings with one ``{}`` slot (default: ``DATASET_TEMPLATES[name]``).
        transform: PIL image → ``{"images": (3, H, W)}``; tokenizer: list of N str → (N, L).
    """

    def __init__(self, dataset: Union[Dataset, Mapping[str, Any]],
                 classnames: Optional[Sequence[str]] = None,
                 templates: Optional[Sequence[str]] = None, transform: Optional[Callable] = None,
                 tokenizer: Optional[Callable] = None, batch_size: int = 64,
                 num_workers: int = 0) -> None:
        name = None
        if isinstance(dataset, Mapping):
            name = dataset.get("name")
            dataset = build_classification_dataset(**dict(dataset))
        if classnames is None:
            if name is None:
                raise ConfigError("zeroshot_classification: pass classnames with a dataset object")
            classnames = dataset_classnames(name, dataset)
        if templates is None:
            if name not in DATASET_TEMPLATES:
                raise ConfigError(f"zeroshot_classification: no default templates for {name!r}; "
                                  "pass templates")
            templates = DATASET_TEMPLATES[name]
        if transform is None or tokenizer is None:
            raise ConfigError("zeroshot_classification: transform and tokenizer are required")
        if not classnames or not templates:
            raise ConfigError("zeroshot_classification: classnames and templates must be non-empty")
        if batch_size < 1:
            raise ConfigError(f"zeroshot_classification batch_size must be >= 1, got {batch_size}")
        self.dataset, self.classnames, self.templates = dataset, list(classnames), list(templates)
        self.transform, self.tokenizer = transform, tokenizer
        self.batch_size, self.num_workers = batch_size, num_workers

    @torch.no_grad()
    def class_weights(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        """(C, D): normalize(mean over templates of normalized prompt embeddings)."""
        prompts = [t.format(c) for c in self.classnames for t in self.templates]
        emb = embed_texts(model, self.tokenizer, prompts, self.batch_size, device)  # (C·T, D)
        emb = emb.view(len(self.classnames), len(self.templates), -1).mean(dim=1)
        return F.normalize(emb, dim=-1)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Dict[str, float]:
        device = module_device(model)
        num_classes = len(self.classnames)
        k = min(5, num_classes)
        hits1 = hits5 = total = 0
        with eval_mode(model):
            weights = self.class_weights(model, device)                            # (C, D)
            loader = DataLoader(_Transformed(self.dataset, self.transform),
                                batch_size=self.batch_size, shuffle=False,
                                num_workers=self.num_workers)
            for images, labels in loader:
                if int(labels.max()) >= num_classes or int(labels.min()) < 0:
                    raise DataError(f"zeroshot_classification: labels must lie in "
                                    f"[0, {num_classes}), got {labels.tolist()}")
                img = model.encode_image(images.to(device), normalize=True).float().cpu()  # (B, D)
                topk = (img @ weights.T).topk(k, dim=1).indices                   # (B, k)
                correct = topk == labels[:, None]
                hits1 += int(correct[:, 0].sum())
                hits5 += int(correct.any(dim=1).sum())
                total += len(labels)
        if total == 0:
            raise DataError("zeroshot_classification: the dataset is empty")
        out = {"top1": 100.0 * hits1 / total}
        if num_classes >= 5:
            out["top5"] = 100.0 * hits5 / total
        return out
