"""Zero-shot segmentation: metrics, dense features / CSA, sliding window, readers, evaluators."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cosmos.data import ClipTokenizer
from cosmos.data.synthetic import SyntheticScenes
from cosmos.evaluation.segmentation import (CLASS_NAMES, DATASET_SPECS, SCLIP_MEAN,
                                            ConfusionMatrix,
                                            SegmentationEvaluator, SegmentationFolder,
                                            confusion_matrix,
                                            csa_block_forward, dense_features, expand_synonyms,
                                            keep_ratio_size, list_pairs, normalize,
                                            predict_classes, resize_keep_ratio,
                                            segmentation_metrics, sliding_window_logits,
                                            window_boxes)
from cosmos.layers.blocks import ResidualAttentionBlock
from cosmos.models.presets import build_dual_encoder
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import DataError


# ----------------------------------------------------------------------------------- metrics
def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    cm = confusion_matrix(pred, target, 4)
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, expected)
    m = segmentation_metrics(cm, ["a", "b", "c", "d"])
    # IoU: a = 1/(2+2-1) = 1/3, b = 2/(2+3-2) = 2/3, c = 0/(1+0-0) = 0, d absent → NaN, excluded
    assert m["mIoU"] == pytest.approx(100 * (1 / 3 + 2 / 3 + 0) / 3)
    assert "IoU/d" not in m  # absent everywhere: no IoU entry (NaN is not valid JSON)
    assert m["aAcc"] == pytest.approx(100 * 3 / 5)
    assert m["mAcc"] == pytest.approx(100 * (0.5 + 1 + 0) / 3)


def test_confusion_accumulates_and_predicted_only_class_counts():
    acc = ConfusionMatrix(3)
    acc.update(torch.tensor([0, 0]), torch.tensor([0, 0]))
    acc.update(torch.tensor([2, 0]), torch.tensor([0, 255]))  # class 2 predicted, never in GT
    assert torch.equal(acc.matrix, torch.tensor([[2, 0, 1], [0, 0, 0], [0, 0, 0]]))
    m = acc.compute()
    assert m["mIoU"] == pytest.approx(100 * (2 / 3 + 0) / 2)  # class 1 NaN, class 2 IoU 0
    with pytest.raises(DataError):
        acc.update(torch.tensor([0]), torch.tensor([3]))


# ---------------------------------------------------------------------------- post-processing
def test_predict_classes_synonyms_and_thresholds():
    # queries: class0 = {q0}, class1 = {q1, q2}, class2 = {q3}; 1x4 image
    owners = torch.tensor([0, 1, 1, 2])
    logits = torch.full((4, 1, 4), -1.0)
    logits[0, 0, 0] = 1.0
    logits[2, 0, 1] = 1.0   # synonym of class 1 wins
    logits[3, 0, 2:] = 1.0
    pred = predict_classes(logits, owners, 3, logit_scale=50.0)
    assert pred.tolist() == [[0, 1, 2, 2]]
    flat = torch.zeros(4, 1, 4)  # uniform probs 0.25 < 0.3 → background
    assert predict_classes(flat, owners, 3, 10.0, prob_thd=0.3).tolist() == [[0, 0, 0, 0]]
    # area threshold: class 1 covers 1 of 3 non-background pixels (33%): kept at 0.3, not 0.5
    assert predict_classes(logits, owners, 3, 50.0, area_thd=0.3).tolist() == [[0, 1, 2, 2]]
    # at 0.5 class 1's map is zeroed; classes 0 and 2 then tie at pixel 1 → first (0) wins
    assert predict_classes(logits, owners, 3, 50.0, area_thd=0.5).tolist() == [[0, 0, 2, 2]]


def test_expand_synonyms_and_class_lists():
    queries, owners = expand_synonyms(["bg, sky", "cat"])
    assert queries == ["bg", "sky", "cat"] and owners == [0, 0, 1]
    sizes = {k: len(v) for k, v in CLASS_NAMES.items()}
    assert sizes == {"voc20": 20, "voc21": 21, "context59": 59, "context60": 60,
                     "coco_object": 81, "coco_stuff171": 171, "cityscapes": 19, "ade20k": 150}
    assert len(expand_synonyms([CLASS_NAMES["voc21"][0]])[0]) == 26
    assert DATASET_SPECS["voc21"].logit_scale == 65 and DATASET_SPECS["voc21"].area_thd == 0.1
    assert DATASET_SPECS["coco_stuff171"].short_side == 448
    assert DATASET_SPECS["cityscapes"].short_side == 560


# ------------------------------------------------------------------------------ dense features
def test_dense_features_match_model_tokens_without_csa():
    torch.manual_seed(0)
    visual = build_dual_encoder("tiny-16").visual.eval()
    images = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        feats = dense_features(visual, images)
        tokens = visual(images)[1]
    ref = F.normalize(tokens @ visual.proj, dim=-1).transpose(1, 2).reshape(2, -1, 3, 2)
    assert feats.shape == (2, 32, 3, 2)
    assert torch.allclose(feats, ref, atol=1e-6)


def _csa_reference(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-head transcription of SCLIP's CSA block."""
    w, heads = x.shape[-1], block.attn.heads
    d = w // heads
    wq, wk, wv = block.attn.in_proj_weight.split(w)
    bq, bk, bv = block.attn.in_proj_bias.split(w)
    out = []
    for xb in x:
        y = block.ln_1(xb)
        q, k, v = y @ wq.T + bq, y @ wk.T + bk, y @ wv.T + bv
        head_out = []
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            a = (torch.softmax(q[:, s] @ q[:, s].T / math.sqrt(d), -1)
                 + torch.softmax(k[:, s] @ k[:, s].T / math.sqrt(d), -1))
            head_out.append(a @ v[:, s])
        z = xb + block.attn.out_proj(torch.cat(head_out, -1))
        out.append(z + block.mlp(block.ln_2(z)))
    return torch.stack(out)


def test_csa_matches_transcription_and_changes_features():
    torch.manual_seed(0)
    block = ResidualAttentionBlock(16, 2).eval()
    with torch.no_grad():
        block.attn.in_proj_bias.normal_()
        x = torch.randn(2, 5, 16)
        assert torch.allclose(csa_block_forward(block, x), _csa_reference(block, x), atol=1e-5)
        visual = build_dual_encoder("tiny-16").visual.eval()
        images = torch.randn(1, 3, 32, 32)
        plain, csa = dense_features(visual, images), dense_features(visual, images, use_csa=True)
        assert not torch.allclose(plain, csa)
        assert torch.allclose(dense_features(visual, images), plain)  # the hook is removed


# ------------------------------------------------------------------------------ sliding window
def test_window_grid_and_keep_ratio():
    img = torch.randint(0, 256, (3, 50, 40), dtype=torch.uint8)
    out = resize_keep_ratio(img, 20)
    assert out.shape == (3, 25, 20) and torch.equal(out, out.round()) and out.max() <= 255
    assert torch.allclose(normalize(torch.tensor(SCLIP_MEAN).view(3, 1, 1)), torch.zeros(3, 1, 1))
    assert keep_ratio_size(500, 375, 336) == (448, 336)
    assert keep_ratio_size(100, 10000, 336) == (20, 2048)   # long side capped
    boxes = window_boxes(300, 260, 224, 112)
    assert boxes == [(0, 224, 0, 224), (0, 224, 36, 260), (76, 300, 0, 224), (76, 300, 36, 260)]
    assert window_boxes(100, 150, 224, 112) == [(0, 100, 0, 150)]


@pytest.mark.parametrize("size", [(300, 260), (100, 150), (224, 224)])
def test_sliding_window_reproduces_full_image_pointwise_map(size):
    torch.manual_seed(0)
    weight = torch.randn(5, 3, 1, 1)
    dense_fn = lambda crops: F.conv2d(crops, weight)  # noqa: E731 - a per-pixel linear "model"
    image = torch.randn(3, *size)
    full = F.conv2d(image[None], weight)[0]
    out = sliding_window_logits(dense_fn, image, 224, 112, crop_batch_size=3)
    assert torch.allclose(out, full, atol=1e-5)
    # low-resolution logits of a constant map stay constant, resized to any output size
    const = lambda crops: torch.ones(crops.shape[0], 2, 7, 7)  # noqa: E731
    out = sliding_window_logits(const, image, 224, 112, out_size=(17, 9))
    assert out.shape == (2, 17, 9) and torch.allclose(out, torch.ones_like(out))


# ----------------------------------------------------------------------------- dataset readers
def _img(path, size=(8, 8)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full(size + (3,), 100, np.uint8)).save(path)


def _label(path, values, palette=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.array(values, np.uint8)
    if palette:  # VOC-style palette PNG: the stored indices are the labels, not the colours
        img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
        img.putpalette([(i * 7) % 256 for i in range(768)])
    else:
        img = Image.fromarray(arr)
    img.save(path)


_RAW = np.array([[0, 1, 2, 255] * 2] * 8)
_REDUCED = np.array([[255, 0, 1, 255] * 2] * 8)


def _make(root, name):
    """Two 8x8 images + labels in ``name``'s layout; returns expected image basenames."""
    r = str(root)
    if name in ("voc20", "voc21", "context59", "context60"):
        ann = "SegmentationClass" if name.startswith("voc") else "SegmentationClassContext"
        split = ("ImageSets/Segmentation/val.txt" if name.startswith("voc")
                 else "ImageSets/SegmentationContext/val.txt")
        os.makedirs(os.path.join(r, os.path.dirname(split)))
        with open(os.path.join(r, split), "w") as f:
            f.write("2007_000002\n2007_000001\n")
        for i in ("2007_000001", "2007_000002", "2007_000003"):
            _img(os.path.join(r, "JPEGImages", i + ".jpg"))
            _label(os.path.join(r, ann, i + ".png"), _RAW, palette=name.startswith("voc"))
        return ["2007_000002.jpg", "2007_000001.jpg"]
    if name in ("coco_object", "coco_stuff171"):
        suffix = "_instanceTrainIds.png" if name == "coco_object" else "_labelTrainIds.png"
        for i in ("000000000139", "000000000285"):
            _img(os.path.join(r, "images/val2017", i + ".jpg"))
            _label(os.path.join(r, "annotations/val2017", i + suffix), _RAW)
        return ["000000000139.jpg", "000000000285.jpg"]
    if name == "cityscapes":
        for city, i in (("frankfurt", "frankfurt_000000_000294"),
                        ("lindau", "lindau_000000_000019")):
            _img(os.path.join(r, "leftImg8bit/val", city, i + "_leftImg8bit.png"))
            _label(os.path.join(r, "gtFine/val", city, i + "_gtFine_labelTrainIds.png"), _RAW)
            _label(os.path.join(r, "gtFine/val", city, i + "_gtFine_labelIds.png"), _RAW * 0 + 7)
        return ["frankfurt_000000_000294_leftImg8bit.png", "lindau_000000_000019_leftImg8bit.png"]
    for i in ("ADE_val_00000001", "ADE_val_00000002"):  # ade20k
        _img(os.path.join(r, "images/validation", i + ".jpg"))
        _label(os.path.join(r, "annotations/validation", i + ".png"), _RAW)
    return ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]


@pytest.mark.parametrize("name", sorted(DATASET_SPECS))
def test_dataset_readers(tmp_path, name):
    expected = _make(tmp_path, name)
    pairs = list_pairs(name, str(tmp_path))
    assert [os.path.basename(p[0]) for p in pairs] == expected
    ds = SegmentationFolder(name, str(tmp_path), max_images=1)
    item = ds[0]
    assert len(ds) == 1 and item["image"].size == (8, 8) and item["image"].mode == "RGB"
    reduced = name in ("voc20", "context59", "ade20k")
    assert item["mask"].dtype == torch.long
    assert np.array_equal(item["mask"].numpy(), _REDUCED if reduced else _RAW)


def test_missing_layout_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="missing"):
        list_pairs("voc21", str(tmp_path))
    with pytest.raises(DataError, match="unknown segmentation dataset"):
        list_pairs("voc22", str(tmp_path))


# ---------------------------------------------------------------------------------- evaluators
_TEMPLATES = ["a photo of a {}.", "a {} shape."]


def test_synthetic_evaluator_runs_and_is_batch_invariant():
    torch.manual_seed(0)
    model = build_dual_encoder("tiny-16").eval()
    data = SyntheticScenes(num_samples=2, image_size=64, split="val")
    tok = ClipTokenizer(77)
    cls = EVALUATORS.get("synthetic_segmentation")
    a = cls(data, tok, templates=_TEMPLATES, crop_batch_size=1)(model)
    b = cls(data, tok, templates=_TEMPLATES, crop_batch_size=16, use_csa=True)(model)
    c = cls(data, tok, templates=_TEMPLATES, crop_batch_size=16)(model)
    for r in (a, b):
        assert 0.0 <= r["mIoU"] <= 100.0 and "IoU/circle" in r
    assert a["mIoU"] == pytest.approx(c["mIoU"], abs=1e-9)
    assert not model.training


def test_benchmark_evaluator_on_fake_voc(tmp_path):
    _make(tmp_path, "voc21")
    model = build_dual_encoder("tiny-16").eval()
    ev = EVALUATORS.get("zeroshot_segmentation")("voc21", str(tmp_path), ClipTokenizer(77),
                                                 templates=_TEMPLATES, short_side=32,
                                                 slide_crop=32, slide_stride=16)
    assert isinstance(ev, SegmentationEvaluator)
    r = ev(model)
    per_class = [k for k in r if k.startswith("IoU/")]  # classes seen in GT or prediction only
    assert 0.0 <= r["mIoU"] <= 100.0 and 1 <= len(per_class) <= 21
    assert all(0.0 <= r[k] <= 100.0 for k in per_class)
