"""Tokenizer parity with open_clip, crop policies, and the deterministic resumable loader."""
from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from cosmos.data import ClipTokenizer, ResumableLoader
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.transforms import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, EvalCrop, FullCaption,
                                    SingleCrop)


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
    # values: torchvision's functional ops with the same torch draws
    torch.manual_seed(0)
    box = T.RandomResizedCrop.get_params(image, [0.9, 1.0], [3 / 4, 4 / 3])
    ref = F.resized_crop(image, *box, [32, 32], T.InterpolationMode.BICUBIC)
    assert torch.equal(out, F.normalize(F.to_tensor(ref), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    ref = F.center_crop(F.resize(image, 40, T.InterpolationMode.BICUBIC), 40)
    assert torch.equal(EvalCrop(size=40)(image)["images"],
                       F.normalize(F.to_tensor(ref), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    # hand values: a one-colour image gives (v / 255 - mean) / std everywhere, grey made RGB
    want = torch.tensor([(v / 255 - m) / s for v, m, s in
                         zip((200, 100, 50), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    for policy in (SingleCrop(size=16), EvalCrop(size=16)):
        pixels = policy(Image.new("RGB", (40, 30), (200, 100, 50)))["images"]
        assert torch.allclose(pixels, want[:, None, None].expand(3, 16, 16), atol=1e-6)
        grey = policy(Image.new("L", (40, 30), 100))["images"]
        assert grey.shape == (3, 16, 16)
        assert torch.allclose(grey[:, 5, 7], (100 / 255 - torch.tensor(OPENAI_CLIP_MEAN))
                              / torch.tensor(OPENAI_CLIP_STD), atol=1e-6)
    caps = {"long": ["One.", "Two."], "raw": "one"}
    assert FullCaption()(caps, random.Random(0)) == "One. Two."
    assert FullCaption(pool="raw")(caps, random.Random(0)) == "one"


def _loader(workers: int = 0) -> ResumableLoader:
    return ResumableLoader(SyntheticScenes(num_samples=10, image_size=32), SingleCrop(size=32),
                           FullCaption(), ClipTokenizer(32), batch_size=4, num_workers=workers,
                           seed=3)


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
