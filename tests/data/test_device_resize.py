"""``cosmos_multicrop_fast(resize_on_device=True)``: crop, bicubic resize and flip in the batch
step (cosmos/data/device_resize.py) against PIL's, which the worker runs otherwise.

Tolerance: none. For integer boxes the tensor resize equals PIL bit for bit, with either pass
order (noise images, whose intermediate rounding shows any order mistake), and so do whole
batches of synthetic scenes; with the PIL backend (the CPU default) both modes give identical
batches. The pass-order rule was found on this Pillow (13.0); should another build order the
passes differently, ``test_equals_pil_bit_for_bit`` says so first.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos.data import collate
from cosmos.data.device_resize import (bicubic_weights, canvas_shape, crop_resize_flip,
                                       vertical_pass_first)
from cosmos.data.multicrop_fast import FastMultiCrop
from cosmos.data.photometric import DinoPhotometric
from cosmos.data.synthetic import SyntheticScenes

F64 = torch.float64


def _bicubic(x: float) -> float:  # PIL's filter, a = -0.5, by hand
    x = abs(x)
    if x < 1:
        return (1.5 * x - 2.5) * x * x + 1
    return (((x - 5) * x + 8) * x - 4) * -0.5 if x < 2 else 0.0


def test_weights_hand_values() -> None:
    # same size: the identity
    w = bicubic_weights(torch.tensor([0.0], dtype=F64), torch.tensor([5.0], dtype=F64), 5, 5)
    assert torch.equal(w[0], torch.eye(5, dtype=F64))
    # 4 → 2 from offset 3 in a 9-wide canvas: filterscale 2, support 4, output 0 centred at 1.0
    w = bicubic_weights(torch.tensor([3.0], dtype=F64), torch.tensor([4.0], dtype=F64), 2, 9)[0]
    taps = [_bicubic((x - 1.0 + 0.5) / 2) for x in range(4)]  # 0.8671875, 0.8671875, ...
    assert taps == [0.8671875, 0.8671875, 0.2265625, -0.0703125]
    want = [t / sum(taps) for t in taps]
    assert torch.allclose(w[0, 3:7], torch.tensor(want, dtype=F64), atol=2 ** -22)
    assert w[0, :3].abs().sum() == 0 and w[0, 7:].abs().sum() == 0  # taps clipped at the crop
    assert torch.equal(w[0] * 2 ** 22, torch.round(w[0] * 2 ** 22))  # 22 fractional bits
    assert torch.equal(w[1, 3:7], w[0, 3:7].flip(0))  # symmetric crop


def test_pass_order_rule_hand_values() -> None:
    h = torch.tensor([90.0, 100.0, 104.0, 105.0, 300.0, 300.0])
    w = torch.tensor([40.0, 40.0, 100.0, 100.0, 198.0, 197.0])
    # vertical first iff h > 96 and h > 2 w - 96
    assert vertical_pass_first(h, w, 96).tolist() == [False, True, False, True, False, True]


@pytest.mark.parametrize("h,w,size", [(60, 70, 96), (100, 120, 96), (41, 57, 33),
                                      (80, 90, 60), (130, 170, 96), (97, 97, 40),
                                      (150, 100, 96), (120, 90, 96), (170, 130, 96),
                                      (140, 71, 40), (149, 60, 33), (105, 100, 96),
                                      (104, 100, 96), (97, 60, 96), (96, 60, 96)])
def test_equals_pil_bit_for_bit(h, w, size) -> None:
    rs = np.random.RandomState(h * w)
    image = rs.randint(0, 256, (200, 180, 3)).astype(np.uint8)
    pil = Image.fromarray(image)
    tops, lefts = [0, 200 - h, min(7, 200 - h)], [180 - w, 0, min(11, 180 - w)]
    boxes = torch.tensor([[t, l, h, w] for t, l in zip(tops, lefts)], dtype=F64)
    flips = torch.tensor([False, True, True])
    out = crop_resize_flip(torch.from_numpy(image).expand(3, -1, -1, -1), boxes, flips, size)
    for k, (t, l) in enumerate(zip(tops, lefts)):
        want = pil.crop((l, t, l + w, t + h)).resize((size, size), Image.BICUBIC)
        if flips[k]:
            want = want.transpose(Image.FLIP_LEFT_RIGHT)
        assert np.array_equal(out[k].numpy(), np.asarray(want)), (k, h, w)


def _samples(resize_on_device: bool, n: int = 40):
    scenes = SyntheticScenes(num_samples=n, image_size=72, split="t")
    fast = FastMultiCrop(global_size=48, local_size=20, resize_on_device=resize_on_device,
                         canvas=(80, 100))
    out = []
    for i in range(n):
        rng = random.Random(i)
        out.append(fast(scenes[i]["image"].resize((96, 72)), rng))
        out[-1]["next_draw"] = torch.tensor(rng.random())
    return collate(out)


def test_pil_backend_gives_the_worker_path_bit_for_bit() -> None:
    exact, moved = _samples(False), _samples(True)
    assert torch.equal(exact["next_draw"], moved["next_draw"])  # same draws, same order
    assert moved["image_uint8"].shape == (40, 80, 100, 3) and "global_crops_uint8" not in moved
    assert moved["global_boxes"].shape == (40, 2, 5) and moved["local_boxes"].shape == (40, 6, 5)
    a, b = DinoPhotometric()(exact, "cpu"), DinoPhotometric()(moved, "cpu")
    for key in ("global_crops", "local_crops"):
        for x, y in zip(a[key], b[key]):
            assert torch.equal(x, y), key
    assert "image_uint8" not in b and "global_boxes" not in b


@pytest.mark.slow
def test_tensor_resize_equals_the_worker_path() -> None:
    exact, moved = _samples(False), _samples(True)
    step = DinoPhotometric(cpu_backend="tensor", resize_chunk=16)
    vertical = 0
    for group in ("global", "local"):
        boxes = moved[f"{group}_boxes"]
        vertical += int(vertical_pass_first(boxes[..., 2], boxes[..., 3], int(boxes[0, 0, 4]))
                        .sum())
        got = step.crops_from_images(moved["image_uint8"], boxes,
                                     moved[f"{group}_photometric"], "cpu")
        assert torch.equal(got, exact[f"{group}_crops_uint8"]), group
    assert vertical > 0  # both pass orders were exercised


def test_oversize_image_is_shrunk_into_the_canvas() -> None:
    assert canvas_shape(72, 96, (80, 100)) == (72, 96)
    assert canvas_shape(300, 200, (100, 100)) == (100, 67)
    image = SyntheticScenes(num_samples=1, image_size=72, split="t")[0]["image"].resize((192, 144))
    big = FastMultiCrop(global_size=48, local_size=20, resize_on_device=True, canvas=(72, 96))
    exact = FastMultiCrop(global_size=48, local_size=20)
    moved = big(image, random.Random(3))
    ref = exact(image, random.Random(3))
    assert moved["image_uint8"].shape == (72, 96, 3)
    # boxes drawn on the 192 × 144 original, scaled by 1/2
    tops = moved["global_boxes"][:, :4] * 2
    assert torch.allclose(tops, tops.round()) and tops[:, 2:].min() >= 0.4 ** 0.5 * 100
    crops = DinoPhotometric().crops_from_images(
        moved["image_uint8"][None], moved["global_boxes"][None],
        moved["global_photometric"][None], "cpu")[0]
    diff = (crops.int() - ref["global_crops_uint8"].int()).abs().float()
    assert diff.mean() < 4  # resampled twice: close, not equal


def test_bad_canvas_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="canvas must be two positive sides"):
        FastMultiCrop(resize_on_device=True, canvas=(0, 10))
