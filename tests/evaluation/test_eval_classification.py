"""Zero-shot classification: metadata, dataset builders and the evaluator on tiny fake data."""
import math
import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cosmos.evaluation.classification import (ZeroShotClassifier, build_classification_dataset,
                                              dataset_classnames)
from cosmos.evaluation.classnames import (DATASET_CLASSNAMES, DATASET_TEMPLATES,
                                          IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES)
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import DataError


def test_metadata():
    assert len(IMAGENET_CLASSNAMES) == 1000 and IMAGENET_CLASSNAMES[0] == "tench"
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    counts = {"cifar10": 18, "cifar100": 18, "food101": 1, "sun397": 2, "stanford_cars": 8,
              "fgvc_aircraft": 2, "dtd": 8, "oxford_pets": 1, "flowers102": 1, "caltech101": 34}
    assert {k: len(DATASET_TEMPLATES[k]) for k in counts} == counts
    for templates in DATASET_TEMPLATES.values():
        assert all(t.count("{}") == 1 for t in templates)
    assert len(DATASET_CLASSNAMES["flowers102"]) == 102
    assert len(DATASET_CLASSNAMES["caltech101"]) == 101


class TableModel(nn.Module):
    """Fake dual encoder: image (3,1,1) with R = 10·k → IMG[k]; text id t → TXT[t]."""

    def __init__(self, img, txt):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.img, self.txt = img, txt

    def encode_image(self, images, normalize=True):
        return F.normalize(self.img[(images[:, 0, 0, 0] / 10).round().long()], dim=-1)

    def encode_text(self, tokens, normalize=True):
        return F.normalize(self.txt[tokens[:, 0]], dim=-1)


def pixel_transform(image):
    return {"images": torch.tensor(image.getpixel((0, 0)), dtype=torch.float).view(3, 1, 1)}


class PromptTokenizer:
    def __init__(self, prompts):
        self.ids = {p: i for i, p in enumerate(prompts)}

    def __call__(self, texts):
        return torch.tensor([[self.ids[t]] for t in texts])


def _solid(k):
    return Image.new("RGB", (8, 8), (10 * k, 0, 0))


def test_hand_worked_top1_top5_with_template_averaging():
    # 6 classes, 2 templates: prompts embed as (e_c ± 2·e_6)/√5; only their mean is ∝ e_c.
    names = [f"c{i}" for i in range(6)]
    templates = ["a {}.", "the {}!"]
    prompts = [t.format(c) for c in names for t in templates]
    txt = torch.zeros(len(prompts), 7)
    for c in range(6):
        txt[2 * c, c], txt[2 * c, 6] = 1, 2
        txt[2 * c + 1, c], txt[2 * c + 1, 6] = 1, -2
    img = torch.tensor([
        [9, 1, 2, 3, 4, 5, 0],     # label 0: rank 0 → top-1 and top-5 hit
        [9, 6, 7, 8, 1, 2, 50],    # label 1: rank 3 → top-5 hit only (e_6 must not matter)
        [9, 6, 1, 8, 7, 5, 0],     # label 2: rank 5 → miss
        [1, 2, 3, 9, 4, 5, 0],     # label 3: rank 0 → hit
    ], dtype=torch.float)
    dataset = [(_solid(k), label) for k, label in enumerate([0, 1, 2, 3])]
    model = TableModel(img, txt)
    results = [EVALUATORS.get("zeroshot_classification")(
        dataset, names, templates, pixel_transform, PromptTokenizer(prompts), batch_size=bs)(model)
        for bs in (1, 64)]
    assert results[0] == results[1]
    assert results[0] == {"top1": 50.0, "top5": 75.0}


def _imagenet_tree(root):
    wnids = ["n01443537", "n01440764", "n01484850"]  # sorted order: 1440764, 1443537, 1484850
    for label, wnid in enumerate(sorted(wnids)):
        for j in range(2):
            os.makedirs(root / "val" / wnid, exist_ok=True)
            path = root / "val" / wnid / f"ILSVRC2012_val_{label}{j}.JPEG"
            _solid(label).save(path, format="JPEG")


def test_imagenet_folder_with_custom_classnames(tmp_path):
    _imagenet_tree(tmp_path)
    ds = build_classification_dataset("imagenet", str(tmp_path))
    assert ds.classes == ["n01440764", "n01443537", "n01484850"] and len(ds) == 6
    names = ["tench", "goldfish", "great white shark"]
    prompts = [f"a photo of a {n}." for n in names]
    img = torch.eye(3)
    img[1] = torch.tensor([0.9, 0.1, 0.0])  # class-1 images look like class 0 → wrong
    clf = ZeroShotClassifier(ds, names, ["a photo of a {}."], pixel_transform,
                             PromptTokenizer(prompts))
    out = clf(TableModel(img, torch.eye(3)))
    assert out.keys() == {"top1"}  # fewer than 5 classes: no top-5
    assert math.isclose(out["top1"], 100.0 * 4 / 6)  # JPEG keeps R within ±4 → same index


def _caltech_tree(root):
    for cat in ["BACKGROUND_Google", "Faces", "Leopards", "accordion"]:
        d = root / "caltech101" / "101_ObjectCategories" / cat
        os.makedirs(d)
        for j in range(1, 5):
            _solid(1).save(d / f"image_{j:04d}.jpg")


def _sun_tree(root):
    d = root / "SUN397"
    os.makedirs(d)
    (d / "ClassName.txt").write_text("/a/abbey\n/b/beach\n/a/apartment_building/outdoor\n")
    for cls in ["a/abbey", "b/beach", "a/apartment_building/outdoor"]:
        os.makedirs(d / cls)
        for j in range(4):
            _solid(2).save(d / cls / f"sun_{cls.replace('/', '')}{j}.jpg")


def test_caltech_and_sun_splits_are_deterministic(tmp_path):
    _caltech_tree(tmp_path)
    _sun_tree(tmp_path)
    cases = [("caltech101", 12 - round(12 * 3000 / 8677)),
             ("sun397", 12 - 2 * round(12 * 19850 / 108754))]
    for name, n_test in cases:
        a = build_classification_dataset(name, str(tmp_path))
        b = build_classification_dataset(name, str(tmp_path))
        train = build_classification_dataset(name, str(tmp_path), split="train")
        assert a.indices == b.indices and len(a) == n_test
        assert not set(a.indices) & set(train.indices)
        image, label = a[0]
        assert isinstance(image, Image.Image) and 0 <= label < 3
    sun = build_classification_dataset("sun397", str(tmp_path))
    assert dataset_classnames("sun397", sun) == ["abbey", "beach", "apartment building outdoor"]
    assert dataset_classnames("caltech101")[:2] == ["off-center face", "centered face"]


def test_missing_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"cifar10: data not found, expected .*cifar-10-batches-py"):
        build_classification_dataset("cifar10", str(tmp_path))
    with pytest.raises(DataError, match=r"imagenet: data not found, expected .*val"):
        ZeroShotClassifier({"name": "imagenet", "root": str(tmp_path)}, transform=pixel_transform,
                           tokenizer=PromptTokenizer([]))
