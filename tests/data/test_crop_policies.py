"""COSMOS crop policies: multi-crop views, sentence splitting and drawing, text crops, batches."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T
from torchvision.transforms import functional as F

from cosmos.data import ClipTokenizer, ResumableLoader
from cosmos.data.multicrop import MultiCrop, ViewRecipe
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.text_crops import (FullCaptionRepeated, PixelProseTextCrop, TextCrop,
                                    draw_sentences, split_caption)
from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cosmos.registry import IMAGE_CROPS, TEXT_CROPS

CAPTIONS = {
    "raw": "red circle",
    "short": ["A red circle with one small shape."],
    "long": ["A big red circle fills the image.", "A tiny blue star sits top left.",
             "A small green square is near the bottom.", "The background is grey."],
}


def _image() -> Image.Image:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (200, 300, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


def _views(out) -> list:
    return out["global_crops"] + out["local_crops"]


def _reference_view(image: Image.Image, recipe: ViewRecipe, rng: random.Random,
                    torch_gates: bool, fired: Counter) -> torch.Tensor:
    """One view written out with torchvision's functional ops and explicit draws, in the order of
    DINO's ``DataAugmentationDINO`` (the official COSMOS recipe): crop geometry, flip and jitter
    factors from torch's global RNG; jitter / grayscale gates from ``rng`` (or from torch with
    ``torch_gates``); blur gate and radius, solarize gate from ``rng``. ``fired`` counts the
    branches taken, so that a test can show that its seeds reach every branch.
    """
    def gate(p: float) -> bool:
        return bool(torch.rand(1) < p) if torch_gates else rng.random() < p

    top, left, h, w = T.RandomResizedCrop.get_params(image, list(recipe.scale), [3 / 4, 4 / 3])
    view = F.resized_crop(image, top, left, h, w, [recipe.size, recipe.size],
                          T.InterpolationMode.BICUBIC).convert("RGB")
    if torch.rand(1) < recipe.flip_p:
        view, fired["flip"] = F.hflip(view), fired["flip"] + 1
    if gate(recipe.jitter_p):
        b, c, s, hue = recipe.jitter
        order, bf, cf, sf, hf = T.ColorJitter.get_params([1 - b, 1 + b], [1 - c, 1 + c],
                                                         [1 - s, 1 + s], [-hue, hue])
        adjust = {0: (F.adjust_brightness, bf), 1: (F.adjust_contrast, cf),
                  2: (F.adjust_saturation, sf), 3: (F.adjust_hue, hf)}
        for index in order.tolist():
            op, factor = adjust[index]
            view = op(view, factor)
        fired["jitter"] += 1
    if gate(recipe.gray_p):
        view, fired["gray"] = F.rgb_to_grayscale(view, num_output_channels=3), fired["gray"] + 1
    if rng.random() <= recipe.blur_p:
        view = view.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*recipe.blur_radius)))
        fired["blur"] += 1
    if recipe.solarize_p > 0 and rng.random() < recipe.solarize_p:
        view, fired["solarize"] = F.solarize(view, recipe.solarize_threshold), fired["solarize"] + 1
    return F.normalize(F.to_tensor(view), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def _reference_views(policy: MultiCrop, image: Image.Image, seed: int, torch_gates: bool,
                     fired: Counter) -> list:
    """Reference views (globals, then locals) for torch seed ``seed``, ``random.Random(seed)``."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    recipes = ([policy.recipe(f"global{i + 1}") for i in range(len(policy.global_views))]
               + [policy.recipe(f"local{i + 1}") for i in range(len(policy.local_views))])
    return [_reference_view(image, r, rng, torch_gates, fired) for r in recipes]


def _policy_views(policy: MultiCrop, image: Image.Image, seed: int) -> list:
    torch.manual_seed(seed)
    return _views(policy(image, random.Random(seed)))


# ----------------------------------------------------------------------------- image multi-crop
def test_multicrop_default_views_equal_the_reference() -> None:
    """The default policy (2 x 224 px, 6 x 96 px) equals the functional transcription exactly."""
    policy, image, fired = IMAGE_CROPS.get("cosmos_multicrop")(), _image(), Counter()
    for seed in (0, 1, 7):  # seed 7 solarizes global 2
        out = _policy_views(policy, image, seed)
        assert [t.shape for t in out] == [(3, 224, 224)] * 2 + [(3, 96, 96)] * 6
        assert all(t.dtype == torch.float32 for t in out)
        ref = _reference_views(policy, image, seed, False, fired)
        assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert set(fired) == {"flip", "jitter", "gray", "blur", "solarize"}, fired


def test_multicrop_torch_gates_views_equal_the_reference() -> None:
    """``torch_gates=True`` draws the jitter and grayscale gates from torch, after the flip."""
    policy = MultiCrop(global_size=48, local_size=24, num_local=2, torch_gates=True)
    image, fired = _image(), Counter()
    for seed in range(12):
        ref = _reference_views(policy, image, seed, True, fired)
        assert all(torch.equal(a, b) for a, b in zip(_policy_views(policy, image, seed), ref))
    assert set(fired) == {"flip", "jitter", "gray", "blur", "solarize"}, fired


def test_multicrop_without_local_crops() -> None:
    policy = MultiCrop(global_size=64, num_global=3, num_local=0)
    out = policy(_image(), random.Random(0))
    assert [t.shape for t in out["global_crops"]] == [(3, 64, 64)] * 3
    assert out["local_crops"] == []
    views = _policy_views(policy, _image(), 1)  # global 3 follows global 2's recipe
    assert all(torch.equal(a, b)
               for a, b in zip(views, _reference_views(policy, _image(), 1, False, Counter())))


def test_multicrop_recipes_follow_the_official_probabilities() -> None:
    policy = MultiCrop(num_global=3)
    g1, g2, g3, l1 = (policy.recipe(n) for n in ("global1", "global2", "global3", "local1"))
    assert (g1.blur_p, g1.solarize_p, g1.scale, g1.size) == (1.0, 0.0, (0.4, 1.0), 224)
    assert (g2.blur_p, g2.solarize_p, g2.solarize_threshold) == (0.1, 0.2, 128)
    assert g3 == g2  # extra global views reuse global 2's recipe
    assert (l1.blur_p, l1.solarize_p, l1.scale, l1.size) == (0.5, 0.0, (0.05, 0.4), 96)
    assert {policy.recipe(f"local{i}") for i in range(1, 7)} == {l1}
    for r in (g1, g2, l1):
        assert (r.flip_p, r.jitter_p, r.gray_p) == (0.5, 0.8, 0.2)
        assert (r.jitter, r.blur_radius) == ((0.4, 0.4, 0.2, 0.1), (0.1, 2.0))
    assert policy.global_views[0].crop.interpolation == policy.local_views[0].crop.interpolation
    assert str(policy.local_views[0].crop.interpolation).endswith("BICUBIC")
    assert policy.local_views[0].crop.ratio == (3 / 4, 4 / 3)
    assert (policy.mean, policy.std) == (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    with pytest.raises(KeyError, match="local7"):
        policy.recipe("local7")


def test_multicrop_is_replayable_from_both_rngs() -> None:
    policy, image = MultiCrop(global_size=64, local_size=32), _image()
    runs = []
    for torch_seed, py_seed in ((5, 7), (5, 7), (5, 8), (6, 7)):
        torch.manual_seed(torch_seed)
        runs.append(_views(policy(image, random.Random(py_seed))))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    for other in runs[2:]:  # either RNG changes the views
        assert not all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_global_view_one_is_always_blurred(monkeypatch) -> None:
    calls = Counter()
    original = Image.Image.filter

    def counting_filter(self, f):
        calls[round(f.radius, 6) if hasattr(f, "radius") else None] += 1
        return original(self, f)

    monkeypatch.setattr(Image.Image, "filter", counting_filter)
    policy = MultiCrop(global_size=32, local_size=16, num_global=1, num_local=0)
    for seed in range(10):
        policy(_image(), random.Random(seed))
    assert sum(calls.values()) == 10 and all(0.1 <= r <= 2.0 for r in calls)


# ----------------------------------------------------------------------------- sentences
def test_split_caption_like_the_official_splitter() -> None:
    assert split_caption("It is 3.5 m long. Nice</s>Next\nLast.") == [
        "It is 3", "5 m long", "Nice", "Next", "Last"]
    assert split_caption("e.g. this") == ["e", "g", "this"]
    assert split_caption("  . \n </s>") == []


def test_draw_sentences_enough_sentences() -> None:
    for seed in range(20):
        drawn = draw_sentences(list("abcdef"), 4, random.Random(seed))
        assert len(drawn) == len(set(drawn)) == 4 and set(drawn) <= set("abcdef")
    assert draw_sentences(["a", "b"], 2, random.Random(0)) in (["a", "b"], ["b", "a"])


def test_draw_sentences_too_few_sentences() -> None:
    for seed in range(20):
        few = draw_sentences(["a", "b"], 5, random.Random(seed))
        assert few[:4] == ["a", "b", "a", "b"] and few[4] in ("a", "b")
    assert draw_sentences(["x"], 3, random.Random(0)) == ["x"] * 3
    with pytest.raises(ValueError, match="empty sentence list"):
        draw_sentences([], 2, random.Random(0))


# ----------------------------------------------------------------------------- text crops
def test_text_crop_structure_and_statistics() -> None:
    policy = TEXT_CROPS.get("cosmos_textcrop")()
    pool = policy.sentence_pool(CAPTIONS)
    assert pool == ["red circle", "A red circle with one small shape",
                    "A big red circle fills the image", "A tiny blue star sits top left",
                    "A small green square is near the bottom", "The background is grey"]
    counts = Counter()
    for seed in range(300):
        crops = policy(CAPTIONS, random.Random(seed))
        assert len(crops) == 8 and all(isinstance(c, str) for c in crops)
        for caption in crops[:2]:
            parts = caption.split(". ")
            assert all(p in pool for p in parts) and len(set(parts)) == len(parts)
            counts[len(parts)] += 1
        assert all(c in pool for c in crops[2:]) and len(set(crops[2:])) == 6
    assert set(counts) == {1, 2, 3, 4, 5}


def test_text_crop_draw_order_is_the_official_one() -> None:
    crops = TextCrop()(CAPTIONS, random.Random(3))
    rng, pool = random.Random(3), TextCrop().sentence_pool(CAPTIONS)
    expected = [". ".join(rng.sample(pool, rng.randint(1, 5))) for _ in range(2)]
    assert crops == expected + rng.sample(pool, 6)


def test_text_crop_pool_order_and_dreamlip_keys() -> None:
    assert TextCrop(pools=("long", "raw")).sentence_pool(
        {"raw": "r", "long": ["l1.", "l2"]}) == ["l1", "l2", "r"]
    dreamlip = {"longLLA_captions": ["lla"], "longIB_captions": ["x", "y"],
                "shortSV_captions": ["s"], "raw_caption": ["raw"], "shortIB_captions": [],
                "longSV_captions": ["sv"]}
    assert TextCrop().sentence_pool(dreamlip) == ["raw", "s", "x", "y", "sv", "lla"]
    assert TextCrop(pools=("raw",)).sentence_pool({"raw": "", "short": ["s"]}) == []


def test_text_crop_short_and_empty_pools() -> None:
    lengths = set()
    for seed in range(50):  # |S| = 1: every draw repeats the one sentence
        crops = TextCrop()({"raw": "only one"}, random.Random(seed))
        assert crops[2:] == ["only one"] * 6
        assert all(set(c.split(". ")) == {"only one"} for c in crops[:2])
        lengths.update(len(c.split(". ")) for c in crops[:2])
    assert lengths == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="no sentences.*nothing here"):
        TextCrop()({"raw": " . ", "note": "nothing here"}, random.Random(0))


def test_pixelprose_text_crop() -> None:
    policy = TEXT_CROPS.get("pixelprose_textcrop")()
    assert policy.sentence_pool({"caption": "One. Two 2.5."}) == [
        "One. Two 2.5.", "One", "Two 2", "5"]
    assert policy.sentence_pool({"caption": "One. Two", "original_caption": "alt. text"}) == [
        "alt. text", "One", "Two"]
    assert PixelProseTextCrop(original_key=None).sentence_pool(
        {"caption": "A. B", "original_caption": "alt"}) == ["A. B", "A", "B"]
    assert len(policy({"caption": "One. Two."}, random.Random(0))) == 8


def test_full_caption_repeated_is_the_no_text_crop_ablation() -> None:
    policy = TEXT_CROPS.get("full_caption_repeated")(num_captions=3)
    assert policy(CAPTIONS, random.Random(0)) == [" ".join(CAPTIONS["long"])] * 3
    assert FullCaptionRepeated(2, pool="raw")(CAPTIONS, random.Random(0)) == ["red circle"] * 2


# ----------------------------------------------------------------------------- loader
def _loader() -> ResumableLoader:
    return ResumableLoader(SyntheticScenes(num_samples=8, image_size=64),
                           MultiCrop(global_size=64, local_size=32), TextCrop(), ClipTokenizer(77),
                           batch_size=4)


def test_batch_through_the_loader() -> None:
    batch = next(iter(_loader()))
    assert [t.shape for t in batch["global_crops"]] == [(4, 3, 64, 64)] * 2
    assert [t.shape for t in batch["local_crops"]] == [(4, 3, 32, 32)] * 6
    assert batch["tokens"].shape == (4, 8, 77)
    # Row j is the policies applied to its scene with the sample's generators: Python's seeded by
    # (loader seed 0, position j), torch's by the first 63 bits drawn from it.
    scenes = SyntheticScenes(num_samples=8, image_size=64)
    for j, key in enumerate(batch["key"]):
        scene = scenes[int(key.rsplit("-", 1)[1])]
        rng = random.Random((0 << 48) ^ j)
        torch.manual_seed(rng.getrandbits(63))
        views = _views(MultiCrop(global_size=64, local_size=32)(scene["image"], rng))
        assert all(torch.equal(v, stacked[j]) for v, stacked in zip(views, _views(batch)))
        tokens = ClipTokenizer(77)(TextCrop()(scene["captions"], rng))
        assert torch.equal(batch["tokens"][j], tokens)
    again = next(iter(_loader()))
    assert all(torch.equal(a, b) for a, b in zip(_views(batch), _views(again)))
    assert torch.equal(batch["tokens"], again["tokens"])


def test_sampled_caption_is_one_cosmos_global_caption() -> None:
    from cosmos.data.text_crops import SampledCaption, TextCrop

    caps = {"raw_caption": "alt text", "long": ["One.", "Two.", "Three."]}
    one = SampledCaption()(caps, random.Random(5))
    ref = TextCrop(num_captions=1, num_global=1)(caps, random.Random(5))
    assert isinstance(one, str) and [one] == ref
    assert set(one.split(". ")) <= {"alt text", "One", "Two", "Three"}


def test_full_caption_reads_the_pool_keys_of_shards() -> None:
    from cosmos.data.transforms import FullCaption, RawCaption

    shard_caps = {"raw_caption": "alt text", "longSV_captions": ["A red circle.", "Blue."]}
    assert RawCaption()(shard_caps, random.Random(0)) == "alt text"
    assert FullCaption("long")(shard_caps, random.Random(0)) == "A red circle. Blue."
    with pytest.raises(ValueError, match="no 'short' caption"):
        FullCaption("short")(shard_caps, random.Random(0))
