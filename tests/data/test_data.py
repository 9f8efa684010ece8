"""Tokenizer parity with open_clip, crop policies, and the deterministic resumable loader."""
from __future__ import annotations

import random

import torch

from cosmos.data import ClipTokenizer, ResumableLoader
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.transforms import EvalCrop, FullCaption, SingleCrop


def test_tokenizer_matches_open_clip() -> None:
    import open_clip
    texts = ["A large red circle fills the center.", "tiny   BLUE star!", "x " * 200]
    ours = ClipTokenizer(77)(texts)
    ref = open_clip.get_tokenizer("ViT-B-16")(texts)
    assert torch.equal(ours, ref)
    assert ours[2, -1] == 49407 and ours[0, 0] == 49406  # EOT kept after truncation
    assert ClipTokenizer(16)("a b c").shape == (16,)


def test_crop_policies() -> None:
    image = SyntheticScenes(num_samples=1, image_size=48)[0]["image"]
    torch.manual_seed(0)
    out = SingleCrop(size=32)(image)["images"]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert EvalCrop(size=40)(image)["images"].shape == (3, 40, 40)
    caps = {"long": ["One.", "Two."], "raw": "one"}
    assert FullCaption()(caps, random.Random(0)) == "One. Two."
    assert FullCaption(pool="raw")(caps, random.Random(0)) == "one"


def _loader(workers: int = 0) -> ResumableLoader:
    return ResumableLoader(SyntheticScenes(num_samples=10, image_size=32), SingleCrop(size=32),
                           FullCaption(), ClipTokenizer(32), batch_size=4, num_workers=workers, seed=3)


def _take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_loader_resume_continues_at_same_sample() -> None:
    straight = _take(_loader(), 5)
    first = _loader()
    _take(first, 2)
    state = first.state_dict()
    assert state["position"] == 2 and state["counters"]["samples"] == 2 * 4
    resumed = _loader()
    resumed.load_state_dict(state)
    later = _take(resumed, 3)
    for a, b in zip(straight[2:], later):
        assert a["key"] == b["key"]
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["tokens"], b["tokens"])


def test_loader_epochs_cover_dataset_and_workers_agree() -> None:
    batches = _take(_loader(), 5)  # 20 samples = 2 epochs of 10
    keys = [k for b in batches for k in b["key"]]
    assert sorted(keys[:10]) == sorted(keys[10:]) and len(set(keys[:10])) == 10
    assert keys[:10] != keys[10:]  # reshuffled each epoch
    with_workers = _take(_loader(workers=2), 3)
    for a, b in zip(batches, with_workers):
        assert a["key"] == b["key"] and torch.equal(a["images"], b["images"])
    assert batches[0]["tokens"].shape == (4, 32) and batches[0]["batch_size"] == 4
