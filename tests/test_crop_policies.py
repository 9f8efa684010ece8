"""COSMOS crop policies: multi-crop views, sentence splitting and drawing, text crops in a batch."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from PIL import Image

from cosmos.data import ClipTokenizer, ResumableLoader
from cosmos.data.multicrop import MultiCrop
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.text_crops import (FullCaptionRepeated, PixelProseTextCrop, TextCrop,
                                    draw_sentences, split_caption)
from cosmos.registry import IMAGE_CROPS, TEXT_CROPS


def _image() -> Image.Image:
    return Image.fromarray(torch.randint(0, 255, (200, 300, 3), dtype=torch.uint8).numpy())


def test_multicrop_defaults_and_recipes() -> None:
    policy = IMAGE_CROPS.get("cosmos_multicrop")()
    torch.manual_seed(0)
    out = policy(_image(), random.Random(0))
    assert [t.shape for t in out["global_crops"]] == [(3, 224, 224)] * 2
    assert [t.shape for t in out["local_crops"]] == [(3, 96, 96)] * 6
    rec = policy.recipes()
    assert [(r.blur_p, r.solarize_p, r.scale) for r in rec["global"]] == [
        (1.0, 0.0, (0.4, 1.0)), (0.1, 0.2, (0.4, 1.0))]
    assert {(r.size, r.blur_p, r.scale) for r in rec["local"]} == {(96, 0.5, (0.05, 0.4))}
    assert MultiCrop(num_local=0)(_image(), random.Random(0))["local_crops"] == []


def test_multicrop_is_deterministic_given_both_rngs() -> None:
    policy, image = MultiCrop(global_size=64, local_size=32), _image()
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(policy(image, random.Random(7)))
    for a, b in zip(runs[0]["global_crops"] + runs[0]["local_crops"],
                    runs[1]["global_crops"] + runs[1]["local_crops"]):
        assert torch.equal(a, b)


def test_split_caption_like_the_official_splitter() -> None:
    assert split_caption("It is 3.5 m long. Nice</s>Next\nLast.") == ["It is 3", "5 m long", "Nice",
                                                                       "Next", "Last"]
    assert split_caption("  . \n ") == []


def test_draw_sentences() -> None:
    rng = random.Random(0)
    drawn = draw_sentences(list("abcdef"), 4, rng)
    assert len(set(drawn)) == 4 and set(drawn) <= set("abcdef")
    few = draw_sentences(["a", "b"], 5, random.Random(1))
    assert few[:4] == ["a", "b", "a", "b"] and few[4] in ("a", "b")
    with pytest.raises(ValueError, match="no sentences"):
        draw_sentences([], 2, rng)


def test_text_crop_structure_and_statistics() -> None:
    caps = {"raw": "red circle", "short": ["A red circle with one small shape."],
            "long": ["A big red circle fills the image.", "A tiny blue star sits top left.",
                     "A small green square is near the bottom.", "The background is grey."]}
    policy = TEXT_CROPS.get("cosmos_textcrop")()
    pool = policy.sentence_pool(caps)
    assert pool[0] == "red circle" and pool[1] == "A red circle with one small shape"
    counts = Counter()
    for seed in range(300):
        crops = policy(caps, random.Random(seed))
        assert len(crops) == 8
        for g in crops[:2]:
            parts = g.split(". ")
            assert all(p in pool for p in parts)
            counts[len(parts)] += 1
        assert all(c in pool for c in crops[2:])
    assert set(counts) == {1, 2, 3, 4, 5}
    dreamlip = {"raw_caption": ["raw"], "longIB_captions": ["x", "y"], "shortSV_captions": ["s"]}
    assert TextCrop().sentence_pool(dreamlip) == ["raw", "s", "x", "y"]  # official key order
    pp = PixelProseTextCrop()
    assert pp.sentence_pool({"caption": "One. Two."}) == ["One. Two.", "One", "Two"]
    assert FullCaptionRepeated(3)(caps, random.Random(0)) == [" ".join(caps["long"])] * 3


def test_batch_through_the_loader() -> None:
    loader = ResumableLoader(SyntheticScenes(num_samples=8, image_size=64),
                             MultiCrop(global_size=64, local_size=32), TextCrop(),
                             ClipTokenizer(77), batch_size=4)
    batch = next(iter(loader))
    assert [t.shape for t in batch["global_crops"]] == [(4, 3, 64, 64)] * 2
    assert [t.shape for t in batch["local_crops"]] == [(4, 3, 32, 32)] * 6
    assert batch["tokens"].shape == (4, 8, 77)
    again = next(iter(ResumableLoader(SyntheticScenes(num_samples=8, image_size=64),
                                      MultiCrop(global_size=64, local_size=32), TextCrop(),
                                      ClipTokenizer(77), batch_size=4)))
    assert torch.equal(batch["local_crops"][3], again["local_crops"][3])
    assert torch.equal(batch["tokens"], again["tokens"])
