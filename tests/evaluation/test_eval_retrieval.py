"""Retrieval annotation readers and the "retrieval" evaluator on tiny fake datasets."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cosmos.data import ClipTokenizer
from cosmos.data.transforms import EvalCrop
from cosmos.evaluation.retrieval_datasets import (read_coco_captions, read_flickr_official,
                                                  read_karpathy)
from cosmos.evaluation.zeroshot_retrieval import RetrievalEvaluator
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import ConfigError, DataError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
# Hand-worked example: image i embeds as e_i (dominant colour channel); a caption embeds by its
# first word. (caption, owner image)
CAPTIONS = [("red a", 0), ("green a", 1), ("crimson a", 2), ("teal a", 2), ("navy a", 1)]
WORD_VECS = {"red": [1, 0, 0], "green": [0, 1, 0], "crimson": [1, 0, 0], "teal": [0, 0.8, 0.6],
             "navy": [0, 0, 1]}
# sim[i, t] = WORD_VECS[word_t][i]. t2i ranks (0, 0, 1, 1, 1); i2t ranks (0, 0, 1).
EXPECTED = {"t2i_R@1": 40.0, "t2i_R@5": 100.0, "t2i_R@10": 100.0,
            "i2t_R@1": 200.0 / 3, "i2t_R@5": 100.0, "i2t_R@10": 100.0}
IMAGES = ["red", "green", "blue"]


class ColourModel(nn.Module):
    """Fake dual encoder: image → one-hot of its dominant channel; text → first word's vector."""

    def __init__(self, tokenizer):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        ids = tokenizer(list(WORD_VECS))[:, 1].tolist()
        vecs = [torch.tensor(v, dtype=torch.float) for v in WORD_VECS.values()]
        self.table = dict(zip(ids, vecs))

    def encode_image(self, images, normalize=True):
        return F.one_hot(images.mean(dim=(2, 3)).argmax(dim=1), 3).float()

    def encode_text(self, tokens, normalize=True):
        return F.normalize(torch.stack([self.table[int(t)] for t in tokens[:, 1]]), dim=-1)


def _png(path, colour):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (8, 8), COLOURS[colour]).save(path)


def _karpathy(root):
    images = [{"filename": f"{c}.jpg", "filepath": "imgs", "split": "test",
               "sentences": [{"raw": cap} for cap, o in CAPTIONS if o == i]}
              for i, c in enumerate(IMAGES)]
    images.insert(1, {"filename": "extra.jpg", "split": "train", "sentences": [{"raw": "red x"}]})
    images.append({"filename": "v.jpg", "split": "val", "sentences": [{"raw": "a"}, {"raw": "b"}]})
    for c in IMAGES:
        _png(os.path.join(root, "imgs", f"{c}.jpg"), c)
    with open(os.path.join(root, "dataset_flickr30k.json"), "w") as f:
        json.dump({"images": images, "dataset": "flickr30k"}, f)


def _coco(root):
    images = [{"id": 100 + i, "file_name": f"{c}.png"} for i, c in enumerate(IMAGES)]
    anns = [{"id": t, "image_id": 100 + o, "caption": cap + " "}
            for t, (cap, o) in enumerate(CAPTIONS)]
    for c in IMAGES:
        _png(os.path.join(root, "val2017", f"{c}.png"), c)
    os.makedirs(os.path.join(root, "annotations"))
    with open(os.path.join(root, "annotations", "captions_val2017.json"), "w") as f:
        json.dump({"images": images, "annotations": anns}, f)


def _flickr_official(root):
    data = [{"image": f"flickr30k-images/{c}.png",
             "caption": [cap for cap, o in CAPTIONS if o == i]} for i, c in enumerate(IMAGES)]
    for c in IMAGES:
        _png(os.path.join(root, "flickr30k-images", f"{c}.png"), c)
    with open(os.path.join(root, "flickr30k_val.json"), "w") as f:
        json.dump(data, f)


LAYOUTS = {"karpathy": (_karpathy, "dataset_flickr30k.json"),
           "coco": (_coco, "annotations/captions_val2017.json"),
           "flickr_official": (_flickr_official, "flickr30k_val.json")}


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer(context_length=77)


def test_readers_parse_each_layout(tmp_path):
    for layout, (make, ann) in LAYOUTS.items():
        root = tmp_path / layout
        root.mkdir()
        make(str(root))
    paths, caps, owner = read_karpathy(str(tmp_path / "karpathy" / "dataset_flickr30k.json"))
    assert paths == ["imgs/red.jpg", "imgs/green.jpg", "imgs/blue.jpg"]
    assert caps == ["red a", "green a", "navy a", "crimson a", "teal a"]
    assert owner == [0, 1, 1, 2, 2]
    assert read_karpathy(str(tmp_path / "karpathy" / "dataset_flickr30k.json"), "val") == \
        (["v.jpg"], ["a", "b"], [0, 0])
    coco = tmp_path / "coco/annotations/captions_val2017.json"
    paths, caps, owner = read_coco_captions(str(coco))
    assert paths == ["red.png", "green.png", "blue.png"]
    assert caps == [c for c, _ in CAPTIONS] and owner == [o for _, o in CAPTIONS]
    paths, caps, owner = read_flickr_official(str(tmp_path / "flickr_official/flickr30k_val.json"))
    assert len(paths) == 3 and paths[0] == "flickr30k-images/red.png"
    assert len(caps) == 5 and owner == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_hand_worked_recall_and_batch_size_invariance(tmp_path, tokenizer, layout):
    make, ann = LAYOUTS[layout]
    make(str(tmp_path))
    model = ColourModel(tokenizer)
    results = []
    for bs in (1, 64):
        ev = EVALUATORS.get("retrieval")(root=str(tmp_path), annotation=ann, layout=layout,
                                         transform=EvalCrop(size=32), tokenizer=tokenizer,
                                         batch_size=bs)
        results.append(ev(model))
    assert results[0] == results[1]
    assert results[0].keys() == EXPECTED.keys()
    for k, v in EXPECTED.items():
        assert math.isclose(results[0][k], v, abs_tol=1e-9), (k, results[0][k], v)


def test_max_images_keeps_only_their_captions(tmp_path, tokenizer):
    _coco(str(tmp_path))
    ev = RetrievalEvaluator(str(tmp_path), "annotations/captions_val2017.json", "coco",
                            transform=EvalCrop(size=32), tokenizer=tokenizer, max_images=2)
    assert len(ev.image_paths) == 2 and ev.captions == ["red a", "green a", "navy a"]
    out = ev(ColourModel(tokenizer))  # images red, green; "navy" (e2) ties both at 0 → rank 0
    assert out["t2i_R@1"] == 100.0 and out["i2t_R@1"] == 100.0


def test_errors(tmp_path, tokenizer):
    kw = dict(transform=EvalCrop(size=32), tokenizer=tokenizer)
    with pytest.raises(DataError, match="annotation file not found: .*flickr30k_val.json"):
        RetrievalEvaluator(str(tmp_path), "flickr30k_val.json", "flickr_official", **kw)
    with pytest.raises(DataError, match="root not found"):
        RetrievalEvaluator(str(tmp_path / "nope"), "x.json", "coco", **kw)
    with pytest.raises(ConfigError, match="unknown retrieval layout"):
        RetrievalEvaluator(str(tmp_path), "x.json", "flickr", **kw)
    _coco(str(tmp_path))
    os.remove(tmp_path / "val2017" / "green.png")
    ev = RetrievalEvaluator(str(tmp_path), "annotations/captions_val2017.json", "coco", **kw)
    with pytest.raises(DataError, match="image not found: .*green.png"):
        ev(ColourModel(tokenizer))
