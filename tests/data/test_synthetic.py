"""Tests for the procedural multi-object scenes dataset (cosmos.data.synthetic)."""
from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos.data import synthetic
from cosmos.data.synthetic import (
    BACKGROUNDS, COLORS, PATTERNS, SEGMENTATION_CLASSES, SHAPES, SMALL_POSITIONS,
    SyntheticScenes, class_names, describe_object, long_caption, prompt_templates,
)


def _shape_id(shape: str) -> int:
    return 1 + SHAPES.index(shape)


def _same(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return (np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
            and torch.equal(a["mask"], b["mask"])
            and a["captions"] == b["captions"] and a["objects"] == b["objects"])


def _large_visible_lower_bound(sample: Dict[str, Any]) -> int:
    """Pixels of the large object's id outside every same-shape small object's box."""
    mask = sample["mask"].numpy()
    large = sample["objects"][0]
    own = mask == _shape_id(large["shape"])
    for obj in sample["objects"][1:]:
        if obj["shape"] == large["shape"]:
            x0, y0, x1, y1 = obj["bbox"]
            own[y0:y1, x0:x1] = False
    return int(own.sum())


def _small_visible(sample: Dict[str, Any], k: int) -> int:
    obj = sample["objects"][k]
    x0, y0, x1, y1 = obj["bbox"]
    return int((sample["mask"].numpy()[y0:y1, x0:x1] == _shape_id(obj["shape"])).sum())


@pytest.fixture(scope="module")
def dataset() -> SyntheticScenes:
    return SyntheticScenes(num_samples=64, image_size=64, split="train", seed=0)


def test_constants() -> None:
    assert len(SHAPES) == 8 and len(set(SHAPES)) == 8
    assert len(COLORS) == 8 and len(set(COLORS.values())) == 8
    assert SEGMENTATION_CLASSES == ("background",) + SHAPES
    assert class_names() == list(SHAPES)
    assert SyntheticScenes.class_names() == list(SHAPES)
    templates = prompt_templates()
    assert len(templates) >= 3
    assert all(t.count("{}") == 1 for t in templates)


def test_determinism(dataset: SyntheticScenes) -> None:
    again = SyntheticScenes(num_samples=64, image_size=64, split="train", seed=0)
    for i in (0, 7, 63):
        assert _same(dataset[i], again[i])
        assert _same(dataset[i], dataset[i])
    assert _same(dataset[-1], dataset[63])


def test_splits_and_seeds_differ(dataset: SyntheticScenes) -> None:
    val = SyntheticScenes(num_samples=64, image_size=64, split="val", seed=0)
    other_seed = SyntheticScenes(num_samples=64, image_size=64, split="train", seed=1)
    for i in range(8):
        image = np.asarray(dataset[i]["image"])
        assert not np.array_equal(image, np.asarray(val[i]["image"]))
        assert not np.array_equal(image, np.asarray(other_seed[i]["image"]))
    assert dataset[3]["key"] == "train-00000003"
    assert val[3]["key"] == "val-00000003"
    assert not np.array_equal(np.asarray(dataset[0]["image"]), np.asarray(dataset[1]["image"]))


@pytest.mark.parametrize("size", [32, 64, pytest.param(224, marks=pytest.mark.slow)])
def test_image_and_mask(size: int) -> None:
    ds = SyntheticScenes(num_samples=12, image_size=size, split="test")
    for i in range(len(ds)):
        sample = ds[i]
        image, mask = sample["image"], sample["mask"]
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB" and image.size == (size, size)
        assert mask.dtype == torch.long and mask.shape == (size, size)
        assert int(mask.min()) >= 0 and int(mask.max()) < len(SEGMENTATION_CLASSES)
        assert int((mask == 0).sum()) > 0
        present = set(torch.unique(mask).tolist())
        for obj in sample["objects"]:
            assert _shape_id(obj["shape"]) in present


def test_objects_visible_and_dominant(dataset: SyntheticScenes) -> None:
    for i in range(len(dataset)):
        sample = dataset[i]
        objects = sample["objects"]
        assert objects[0]["size"] == "large"
        assert all(o["size"] == "small" for o in objects[1:])
        assert 1 <= len(objects) - 1 <= 3
        large_area = _large_visible_lower_bound(sample)
        # The sparsest large shapes (star, triangle) cover ~9% of the image at minimum size.
        assert large_area >= 0.06 * 64 * 64, (i, objects[0], large_area)
        for k in range(1, len(objects)):
            small_area = _small_visible(sample, k)
            assert small_area >= 1
            assert large_area > small_area
            small, large = objects[k], objects[0]
            assert (small["shape"], small["color"]) != (large["shape"], large["color"])
        for obj in objects:
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            assert obj["color"] in COLORS and obj["shape"] in SHAPES


def test_label(dataset: SyntheticScenes) -> None:
    for i in range(16):
        sample = dataset[i]
        assert isinstance(sample["label"], int)
        assert sample["label"] == SHAPES.index(sample["objects"][0]["shape"])


def test_captions(dataset: SyntheticScenes) -> None:
    for i in range(len(dataset)):
        sample = dataset[i]
        caps, objects = sample["captions"], sample["objects"]
        long = caps["long"]
        # One sentence per object, then exactly one background sentence.
        assert len(long) == len(objects) + 1
        for sentence in long:
            assert sentence.endswith(".") and sentence.count(".") == 1
            assert sentence[0].isupper()
        recovered = [s.strip() + "." for s in " ".join(long).split(".") if s.strip()]
        assert recovered == long
        for sentence, obj in zip(long, objects):
            assert obj["color"] in sentence and obj["shape"] in sentence
        assert "background" in long[-1] or "backdrop" in long[-1] or "surface" in long[-1]
        large = objects[0]
        assert len(caps["short"]) == 1
        short = caps["short"][0]
        assert short.endswith(".") and short.count(".") == 1
        assert large["color"] in short and large["shape"] in short
        assert large["color"] in caps["raw"] and large["shape"] in caps["raw"]


def test_caption_articles_and_variety(dataset: SyntheticScenes) -> None:
    sentences = [s for i in range(len(dataset)) for s in dataset[i]["captions"]["long"]]
    assert not any(" a orange" in s or "A orange" in s for s in sentences)
    assert not any(" an big" in s or "An large" in s for s in sentences)
    first_words = {s.split()[0] for s in sentences}
    assert len(first_words) >= 4
    assert len(set(sentences)) > len(sentences) // 2


def test_describe_object() -> None:
    rng = np.random.default_rng(0)
    obj = {"shape": "star", "color": "orange", "size": "small", "position": "top right"}
    texts = {describe_object(obj, rng) for _ in range(40)}
    assert len(texts) > 3
    for text in texts:
        assert "orange star" in text and text.endswith(".") and text.count(".") == 1
        assert "right" in text


def test_attributes_and_wording_rebuild_the_long_caption(dataset: SyntheticScenes) -> None:
    for i in range(len(dataset)):
        sample = dataset[i]
        background = sample["background"]
        assert background["color"] in BACKGROUNDS and background["pattern"] in PATTERNS
        assert background["color"] in sample["captions"]["long"][-1]
        assert long_caption(sample["objects"], background, sample["wording"]) == \
            sample["captions"]["long"]
        assert all(o["position"] in SMALL_POSITIONS for o in sample["objects"][1:])


def test_a_changed_attribute_changes_only_its_words() -> None:
    objects = [{"shape": "circle", "color": "red", "size": "large", "position": "center"},
               {"shape": "square", "color": "blue", "size": "small", "position": "top left"}]
    background = {"color": "gray", "pattern": "stripes"}
    wording = {"objects": [{"size": 0, "position": 0, "template": 0},
                           {"size": 1, "position": 0, "template": 2}],
               "background": {"pattern": 0, "template": 0}}
    assert long_caption(objects, background, wording) == [
        "A large red circle fills the center of the image.",
        "A tiny blue square appears in the top left corner.",
        "The background is a striped gray surface."]
    small = dict(objects[1], color="orange", position="bottom right")
    dominant = dict(objects[0], color="orange", shape="star")
    assert long_caption([dominant, small], dict(background, color="olive"), wording) == [
        "A large orange star fills the center of the image.",
        "A tiny orange square appears in the bottom right corner.",
        "The background is a striped olive surface."]
    with pytest.raises(ValueError, match="wording index 5"):
        long_caption(objects, background, dict(wording, background={"pattern": 0,
                                                                    "template": 5}))


def test_instances_match_the_mask_and_the_objects(dataset: SyntheticScenes) -> None:
    for i in range(len(dataset)):
        sample = dataset[i]
        instances, mask = sample["instances"], sample["mask"]
        assert instances.dtype == torch.long and instances.shape == mask.shape
        assert torch.equal(instances == 0, mask == 0)
        assert int(instances.max()) == len(sample["objects"])
        for k, obj in enumerate(sample["objects"]):
            pixels = instances == k + 1
            assert pixels.any()
            assert bool((mask[pixels] == _shape_id(obj["shape"])).all())


def test_num_small_range() -> None:
    alone = SyntheticScenes(num_samples=4, min_small=0, max_small=0)
    sample = alone[0]
    assert len(sample["objects"]) == 1 and len(sample["captions"]["long"]) == 2
    crowded = SyntheticScenes(num_samples=4, min_small=8, max_small=8)
    sample = crowded[1]
    assert len(sample["objects"]) == 9
    positions = [o["position"] for o in sample["objects"][1:]]
    assert len(set(positions)) == 8 and "center" not in positions
    for k in range(1, 9):
        assert _small_visible(sample, k) >= 1


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        SyntheticScenes(min_small=3, max_small=1)
    with pytest.raises(ValueError):
        SyntheticScenes(max_small=9)
    with pytest.raises(ValueError):
        SyntheticScenes(seed=-1)


def test_index_error(dataset: SyntheticScenes) -> None:
    assert len(dataset) == 64
    with pytest.raises(IndexError):
        dataset[64]
    with pytest.raises(IndexError):
        dataset[-65]
    with pytest.raises(IndexError):
        SyntheticScenes(num_samples=0)[0]


def test_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmos import registry

    assert registry.DATASETS._objects["synthetic_scenes"] is SyntheticScenes
    monkeypatch.setitem(registry._builtins_state, "loaded", True)
    assert registry.DATASETS.get("synthetic_scenes") is synthetic.SyntheticScenes


@pytest.mark.slow
def test_generation_speed() -> None:
    ds = SyntheticScenes(num_samples=2000, image_size=64)
    start = time.perf_counter()
    labels = [ds[i]["label"] for i in range(len(ds))]
    elapsed = time.perf_counter() - start
    print(f"generated 2000 scenes at 64 px in {elapsed:.2f} s")
    assert len(labels) == 2000
    assert len(set(labels)) == len(SHAPES)
