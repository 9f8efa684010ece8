"""The COSMOS image recipe (arXiv 2412.01814 §3, the official ``DataAugmentationMulticrop``):
frequencies and ranges of every random operation over thousands of draws, each batched op equal
to torchvision's functional op on PIL images (what the per-sample path runs) value for value,
and the fast path equal to the per-sample path for the same seeds.

Tolerances: the batched ops reproduce PIL's 8-bit arithmetic, so they are compared with
``torch.equal`` (0 levels); the normalised crops of both paths with ``torch.equal`` too.
Frequencies: each lies in its 99.9% Wilson interval around the recipe's probability.
"""
from __future__ import annotations

import logging
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import functional as TF

from cosmos.data import collate
from cosmos.data import photometric as P
from cosmos.data.multicrop import MultiCrop
from cosmos.data.multicrop_fast import FastMultiCrop, crop_box
from cosmos.data.photometric import COL, DinoPhotometric
from cosmos.data.synthetic import SyntheticScenes

Z_999 = 3.2905  # two-sided 99.9% normal quantile
DRAWS = 2000


def wilson(successes: int, n: int, z: float = Z_999):
    """Wilson score interval of a binomial proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def assert_rate(flags: np.ndarray, p: float, what: str) -> None:
    n, k = len(flags), int(np.sum(flags))
    if p in (0.0, 1.0):
        assert k == round(p * n), f"{what}: {k}/{n}, expected always {bool(p)}"
        return
    low, high = wilson(k, n)
    assert low <= p <= high, f"{what}: {k}/{n} = {k / n:.4f}, 99.9% interval ({low:.4f}, " \
                             f"{high:.4f}) excludes {p}"


def test_wilson_interval_hand_values() -> None:
    low, high = wilson(50, 100, z=1.96)  # textbook: 0.4038 … 0.5962
    assert low == pytest.approx(0.40383, abs=1e-4) and high == pytest.approx(0.59617, abs=1e-4)


@pytest.fixture(scope="module")
def draws():
    """Parameter rows of DRAWS samples (tiny image and crops: the draws do not depend on size)."""
    policy = FastMultiCrop(global_size=8, local_size=4)
    image = Image.new("RGB", (40, 30), (90, 120, 200))
    rows = [policy(image, random.Random(i)) for i in range(DRAWS)]
    return (np.stack([r["global_photometric"].numpy() for r in rows]),   # (N, 2, K)
            np.stack([r["local_photometric"].numpy() for r in rows]))    # (N, 6, K)


@pytest.mark.parametrize("column, probs", [
    ("flipped", (0.5, 0.5, 0.5)), ("jitter_on", (0.8, 0.8, 0.8)), ("gray_on", (0.2, 0.2, 0.2)),
    ("blur_on", (1.0, 0.1, 0.5)), ("solarize_on", (0.0, 0.2, 0.0))])
def test_operation_frequencies(draws, column, probs) -> None:
    glob, loc = draws
    for name, flags, p in (("global1", glob[:, 0], probs[0]), ("global2", glob[:, 1], probs[1]),
                           ("local", loc.reshape(-1, loc.shape[-1]), probs[2])):
        assert_rate(flags[:, COL[column]] > 0.5, p, f"{column} of {name}")


def test_jitter_factors_order_and_blur_radius_ranges(draws) -> None:
    rows = np.concatenate([draws[0].reshape(-1, draws[0].shape[-1]),
                           draws[1].reshape(-1, draws[1].shape[-1])])
    jit = rows[rows[:, COL["jitter_on"]] > 0.5]
    for column, (low, high) in (("brightness", (0.6, 1.4)), ("contrast", (0.6, 1.4)),
                                ("saturation", (0.8, 1.2)), ("hue", (-0.1, 0.1))):
        values = jit[:, COL[column]]
        assert values.min() >= low and values.max() <= high, column
        # uniform: the mean within 99.9% of (low + high) / 2, a quarter below low + (high-low)/4
        sd = (high - low) / math.sqrt(12 * len(values))
        assert abs(values.mean() - (low + high) / 2) < Z_999 * sd, column
        assert_rate(values < low + (high - low) / 4, 0.25, f"{column} lower quarter")
    orders = jit[:, COL["order0"]: COL["order3"] + 1].astype(int)
    assert (np.sort(orders, axis=1) == np.arange(4)).all()  # a permutation of the four ops
    for op in range(4):
        assert_rate(orders[:, 0] == op, 0.25, f"op {op} first")
    radius = rows[rows[:, COL["blur_on"]] > 0.5, COL["blur_radius"]]
    assert radius.min() >= 0.1 and radius.max() <= 2.0
    assert_rate(radius < 0.575, 0.25, "blur radius lower quarter")
    assert (rows[:, COL["solarize_threshold"]] == 128).all()


@pytest.mark.parametrize("scale", [(0.4, 1.0), (0.05, 0.4)])
def test_crop_area_and_aspect_ratio(scale) -> None:
    width, height = 400, 300
    gen, buf = torch.Generator().manual_seed(0), torch.empty(1)
    boxes = np.array([crop_box(width, height, scale, gen, buf) for _ in range(DRAWS)])
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    area = h * w / (width * height)
    aspect = w / h
    # w and h are rounded to pixels: allow half a pixel on each side
    slack_area = (w + h + 1) / (2 * width * height)
    assert (area >= scale[0] - slack_area).all() and (area <= scale[1] + slack_area).all()
    assert (aspect >= 3 / 4 * (1 - 1 / h)).all() and (aspect <= 4 / 3 * (1 + 1 / h)).all()
    if scale[1] <= 0.4:  # no box is rejected: area uniform in scale, log aspect uniform
        assert_rate(area < sum(scale) / 2, 0.5, "area below the middle of the scale range")
        assert_rate(np.log(aspect) < 0, 0.5, "aspect below 1")
    # (for (0.4, 1) large boxes of extreme aspect do not fit the 4:3 image and are drawn again,
    # torchvision's rule, so the area is not uniform there: the draws below are compared instead)
    # the draws are torchvision's: the same numbers as RandomResizedCrop.get_params
    from torchvision.transforms import RandomResizedCrop
    torch.manual_seed(7)
    expected = [RandomResizedCrop.get_params(Image.new("RGB", (width, height)), scale,
                                             (3 / 4, 4 / 3)) for _ in range(50)]
    gen.manual_seed(7)
    assert [crop_box(width, height, scale, gen, buf) for _ in range(50)] == expected


# ----------------------------------------------------------------------------- op by op
def _images(n: int = 4, size=(37, 29)):
    """A few images: a synthetic scene crop, a gray ramp, random noise, a saturated palette."""
    rng = np.random.default_rng(0)
    scene = np.asarray(SyntheticScenes(num_samples=1, image_size=64, split="t")[0]["image"])
    ramp = np.broadcast_to(np.linspace(0, 255, size[0]).astype(np.uint8)[None, :, None],
                           (size[1], size[0], 3))
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    palette = (rng.integers(0, 2, (size[1], size[0], 3)) * 255).astype(np.uint8)
    out = [scene[: size[1], : size[0]], ramp, noise, palette]
    return np.stack([np.ascontiguousarray(a) for a in out[:n]])


def _as_batch(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float()


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= 255
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()


@pytest.mark.parametrize("name, ours, reference, factors", [
    ("brightness", P.adjust_brightness, TF.adjust_brightness, (0.6, 0.83, 1.0, 1.17, 1.4)),
    ("contrast", P.adjust_contrast, TF.adjust_contrast, (0.6, 0.91, 1.0, 1.23, 1.4)),
    ("saturation", P.adjust_saturation, TF.adjust_saturation, (0.8, 0.95, 1.0, 1.2)),
    ("hue", P.adjust_hue, TF.adjust_hue, (-0.1, -0.037, 0.0, 0.004, 0.061, 0.1)),
])
def test_jitter_op_equals_torchvision_on_pil(name, ours, reference, factors) -> None:
    pixels = _images()
    for f in factors:
        f32 = float(np.float32(f))  # the loader stores factors as float32
        got = _as_uint8(ours(_as_batch(pixels), torch.full((len(pixels),), f32)))
        for n in range(len(pixels)):
            want = np.asarray(reference(Image.fromarray(pixels[n]), f32))
            assert np.array_equal(got[n], want), f"{name} {f} image {n}: max " \
                f"{np.abs(got[n].astype(int) - want).max()} levels"


def test_gray_solarize_blur_equal_pil() -> None:
    pixels = _images()
    gray = _as_uint8(P.to_gray(_as_batch(pixels)).expand(-1, 3, -1, -1))
    sol = _as_uint8(P.solarize(_as_batch(pixels), torch.full((len(pixels),), 128.0)))
    radii = [0.1, 0.37, 0.9, 1.3, 1.77, 2.0]
    for n in range(len(pixels)):
        image = Image.fromarray(pixels[n])
        assert np.array_equal(gray[n], np.asarray(TF.to_grayscale(image, 3)))
        assert np.array_equal(sol[n], np.asarray(ImageOps.solarize(image, threshold=128)))
        batch = _as_batch(np.repeat(pixels[n: n + 1], len(radii), axis=0))
        blurred = _as_uint8(P.gaussian_blur(batch, radii))
        for k, radius in enumerate(radii):
            want = np.asarray(image.filter(ImageFilter.GaussianBlur(radius=radius)))
            assert np.array_equal(blurred[k], want), f"blur {radius} image {n}"


# ----------------------------------------------------------------------------- whole views
@pytest.mark.parametrize("backend", ["pil", pytest.param("tensor", marks=pytest.mark.slow)])
def test_fast_path_equals_per_sample_path(backend) -> None:
    """Same seeds → identical crops, after normalisation, bit for bit (40 samples × 8 views)."""
    scenes = SyntheticScenes(num_samples=40, image_size=72, split="t")
    old = MultiCrop(global_size=48, local_size=20)
    fast = FastMultiCrop(global_size=48, local_size=20)
    expected, samples = [], []
    for i in range(40):
        image = scenes[i]["image"].resize((96, 72))
        rng = random.Random(i)
        torch.manual_seed(rng.getrandbits(63))
        expected.append(old(image, rng))
        after_old = rng.random()
        rng = random.Random(i)
        samples.append(fast(image, rng))
        assert rng.random() == after_old  # text crops then draw the same numbers
    batch = DinoPhotometric(cpu_backend=backend)(collate(samples), "cpu")
    params = collate(samples)["global_photometric"]
    assert params[:, :, COL["jitter_on"]].sum() > 0 and params[:, 1, COL["solarize_on"]].sum() > 0
    for key in ("global_crops", "local_crops"):
        assert len(batch[key]) == len(expected[0][key])
        for v, views in enumerate(batch[key]):
            want = torch.stack([e[key][v] for e in expected])
            assert views.dtype == torch.float32 and views.shape == want.shape
            assert torch.equal(views, want), f"{key}[{v}]: max {(views - want).abs().max()}"


def test_no_local_crops_and_passthrough() -> None:
    fast = FastMultiCrop(global_size=16, local_size=8, num_local=0)
    sample = fast(Image.new("RGB", (30, 20), (10, 200, 30)), random.Random(0))
    assert sample["local_crops_uint8"].shape == (0, 8, 8, 3)
    batch = collate([sample, sample])
    batch["tokens"] = torch.ones(2, 8, 77, dtype=torch.long)
    out = DinoPhotometric()(batch, "cpu")
    assert out["local_crops"] == [] and len(out["global_crops"]) == 2
    assert out["global_crops"][0].shape == (2, 3, 16, 16) and out["tokens"] is batch["tokens"]
    assert "global_crops_uint8" not in out and "global_photometric" not in out
    plain = {"images": torch.zeros(2, 3, 4, 4)}
    assert DinoPhotometric()(plain, "cpu").keys() == plain.keys()


def test_unavailable_device_falls_back_to_cpu_with_one_line(caplog) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: no fallback to test")
    step = DinoPhotometric(device="cuda")
    sample = FastMultiCrop(global_size=16, local_size=8)(Image.new("RGB", (30, 20)),
                                                         random.Random(1))
    with caplog.at_level(logging.WARNING):
        out = [step(collate([sample]), "cpu") for _ in range(3)]
    lines = [r for r in caplog.records if "not available" in r.getMessage()]
    assert len(lines) == 1 and "cuda" in lines[0].getMessage()
    assert out[0]["global_crops"][0].device.type == "cpu"
    assert torch.equal(out[0]["global_crops"][0], out[2]["global_crops"][0])
