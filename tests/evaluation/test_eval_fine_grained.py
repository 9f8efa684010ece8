"""Fine-grained synthetic evaluators: multi-positive ranking metrics and their chance levels,
hard-negative captions, small-object retrieval and segmentation split by object size. Numbers
are worked out by hand on fake encoders whose embeddings the tests choose; results do not depend
on the evaluation batch size; scenes without the needed fields stop with one line."""
from __future__ import annotations

import difflib
import itertools
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cosmos.data import ClipTokenizer
from cosmos.data.synthetic import (BACKGROUNDS, COLORS, SHAPES, SMALL_POSITIONS,
                                   SyntheticScenes)
from cosmos.data.transforms import EvalCrop
from cosmos.engine.defaults import run_cli
from cosmos.evaluation.hard_negatives import (KINDS, HardNegativeEvaluator, allowed_changes,
                                              hard_negative_captions)
from cosmos.evaluation.object_retrieval import ObjectRetrievalEvaluator
from cosmos.evaluation.ranking import (choice_credit, expected_average_precision,
                                       multi_positive_retrieval)
from cosmos.evaluation.segmentation.evaluator import (SyntheticSegmentationEvaluator,
                                                      object_group_metrics, size_split_targets)
from cosmos.evaluation.segmentation.metrics import confusion_matrix, per_class_iou
from cosmos.models.presets import build_dual_encoder
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import DataError


# ------------------------------------------------------------------------------- fakes
class Vocabulary:
    """A fake tokenizer: every distinct text gets one id (>= 1), tokens are (N, 1)."""

    def __init__(self) -> None:
        self.texts: List[str] = []
        self.ids: Dict[str, int] = {}

    def __call__(self, texts: List[str]) -> torch.Tensor:
        for text in texts:
            if text not in self.ids:
                self.texts.append(text)
                self.ids[text] = len(self.texts)
        return torch.tensor([[self.ids[t]] for t in texts])


class IndexTransform:
    """A fake image transform: the image becomes a (3, 1, 1) tensor holding its scene index."""

    def __init__(self, images: List[Image.Image]) -> None:
        self.index = {np.asarray(img).tobytes(): i for i, img in enumerate(images)}

    def __call__(self, image: Image.Image) -> Dict[str, torch.Tensor]:
        return {"images": torch.full((3, 1, 1), float(self.index[np.asarray(image).tobytes()]))}


class FakeEncoder(nn.Module):
    """A dual encoder whose embeddings are ``image_fn(scene index)`` and ``text_fn(text)``."""

    def __init__(self, image_fn: Callable[[int], torch.Tensor],
                 text_fn: Callable[[str], torch.Tensor], vocabulary: Vocabulary) -> None:
        super().__init__()
        self.image_fn, self.text_fn, self.vocabulary = image_fn, text_fn, vocabulary
        self.unused = nn.Parameter(torch.zeros(1))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = torch.stack([self.image_fn(int(x[0, 0, 0])) for x in images]).float()
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = torch.stack([self.text_fn(self.vocabulary.texts[int(t[0]) - 1])
                           for t in tokens]).float()
        return F.normalize(emb, dim=-1) if normalize else emb


def _scenes(num: int = 24, size: int = 32) -> SyntheticScenes:
    return SyntheticScenes(num_samples=num, image_size=size, split="val", seed=0)


# ------------------------------------------------------------------------ ranking metrics
def test_multi_positive_retrieval_by_hand() -> None:
    # 5 queries x 4 images; rows are the scores. Positives: q0 {0,1}, q1 {0}, q2 {0,1} (all
    # tied), q3 {2}, q4 {3}.
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.4, 0.8, 0.6], [0.5, 0.5, 0.5, 0.5],
                        [0.1, 0.2, 0.9, 0.3], [0.4, 0.3, 0.2, 0.1]])
    pos = torch.zeros(5, 4, dtype=torch.bool)
    for q, images in enumerate([(0, 1), (0,), (0, 1), (2,), (3,)]):
        pos[q, list(images)] = True
    out = multi_positive_retrieval(sim, pos, ks=(1, 2))
    h4 = 1 + 1 / 2 + 1 / 3 + 1 / 4
    tied_ap = h4 / 4 + (4 - h4) / 12      # P=2 of N=4, all tied = a random ranking
    # APs: q0 positives at ranks 1, 4 → (1/1 + 2/4)/2; q1 rank 4 → 1/4; q3 rank 1; q4 rank 4
    assert out["mAP"] == pytest.approx(100 * (0.75 + 0.25 + tied_ap + 1 + 0.25) / 5)
    # R@1: q0 hit, q2 1 - C(2,1)/C(4,1) = 1/2, q3 hit; R@2: q2 1 - C(2,2)/C(4,2) = 5/6
    assert out["R@1"] == pytest.approx(100 * (1 + 0.5 + 1) / 5)
    assert out["R@2"] == pytest.approx(100 * (1 + 5 / 6 + 1) / 5)
    # chance: R@1 = P/N; R@2 = 1 - C(N-P,2)/C(N,2) = 5/6 (P=2), 1/2 (P=1); AP = h4/4 (P=1)
    assert out["R@1_chance"] == pytest.approx(100 * (2 / 4 + 1 / 4 + 2 / 4 + 1 / 4 + 1 / 4) / 5)
    assert out["R@2_chance"] == pytest.approx(100 * (2 * 5 / 6 + 3 * 0.5) / 5)
    assert out["mAP_chance"] == pytest.approx(100 * (2 * tied_ap + 3 * h4 / 4) / 5)
    assert out["positives"] == pytest.approx(7 / 5)


def _brute_force(scores: np.ndarray, positive: np.ndarray, k: int):
    """AP and hit@k averaged over every order of the candidates consistent with the scores."""
    aps, hits = [], []
    for keys in itertools.permutations(range(len(scores))):
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], keys[i]))
        rel = positive[order]
        ranks = np.flatnonzero(rel) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        hits.append(float(rel[:k].any()))
    return float(np.mean(aps)), float(np.mean(hits))


def test_ties_count_in_expectation_and_chance_is_exact() -> None:
    rng = np.random.default_rng(0)
    for trial in range(12):
        scores = rng.integers(0, 3, size=6).astype(np.float64)   # many ties
        if trial < 2:
            scores[:] = 1.0                                        # a constant model
        positive = rng.random(6) < 0.4
        positive[int(rng.integers(6))] = True
        for k in (1, 2, 4):
            ap, hit = _brute_force(scores, positive, k)
            out = multi_positive_retrieval(torch.tensor(scores)[None], torch.tensor(positive)[None],
                                           ks=(k,))
            assert out["mAP"] == pytest.approx(100 * ap)
            assert out[f"R@{k}"] == pytest.approx(100 * hit)
            if trial < 2:  # all tied: exactly the chance level
                assert out["mAP"] == pytest.approx(out["mAP_chance"])
                assert out[f"R@{k}"] == pytest.approx(out[f"R@{k}_chance"])
    assert expected_average_precision(np.array([3.0, 2.0, 1.0]), np.array([False, True, True])) \
        == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_choice_credit_by_hand() -> None:
    true = torch.tensor([1.0, 0.5, 0.2, 0.3])
    others = torch.tensor([[0.5, 0.9], [0.5, 0.4], [0.2, 0.2], [0.1, 7.0]])
    valid = torch.tensor([[True, True], [True, True], [True, True], [True, False]])
    # row 0 beats both → 1; row 1 ties one, beats one → 1/2; row 2 ties two → 1/3; row 3 beats
    # its only valid other (the padded 7.0 does not count) → 1
    assert choice_credit(true, others, valid).tolist() == pytest.approx([1.0, 0.5, 1 / 3, 1.0])
    assert choice_credit(torch.tensor([0.1]), torch.tensor([[0.2, 0.0]]),
                         torch.ones(1, 2, dtype=torch.bool)).tolist() == [0.0]


# ------------------------------------------------------------------------- hard negatives
_SCENE = [{"shape": "circle", "color": "red", "size": "large", "position": "center"},
          {"shape": "square", "color": "blue", "size": "small", "position": "top left"},
          {"shape": "circle", "color": "blue", "size": "small", "position": "bottom"}]


def test_allowed_changes_follow_the_rule() -> None:
    bg = {"color": "gray", "pattern": "stripes"}
    small_color = allowed_changes(_SCENE, bg, "small_color")
    # never its own colour nor the dominant red; 6 colours for each small object
    assert sorted(small_color) == sorted((j, c) for j in (1, 2) for c in COLORS
                                         if c not in ("blue", "red"))
    small_shape = allowed_changes(_SCENE, bg, "small_shape")
    # the blue square may not become a circle: a blue circle is already in the scene
    assert (1, "circle") not in small_shape and (2, "square") not in small_shape
    assert len(small_shape) == 12 and (1, "star") in small_shape
    positions = allowed_changes(_SCENE, bg, "small_position")
    assert sorted(positions) == sorted((j, p) for j in (1, 2) for p in SMALL_POSITIONS
                                       if p not in ("top left", "bottom"))
    assert "center" not in {p for _, p in positions}
    assert sorted(c for _, c in allowed_changes(_SCENE, bg, "dominant_color")) == \
        sorted(c for c in COLORS if c not in ("red", "blue"))
    assert sorted(s for _, s in allowed_changes(_SCENE, bg, "dominant_shape")) == \
        sorted(s for s in SHAPES if s != "circle")
    assert sorted(b for _, b in allowed_changes(_SCENE, bg, "background")) == \
        sorted(b for b in BACKGROUNDS if b != "gray")


_KIND_WORDS = {
    "small_color": set(COLORS), "dominant_color": set(COLORS), "small_shape": set(SHAPES),
    "dominant_shape": set(SHAPES), "background": set(BACKGROUNDS),
    "small_position": {"in", "the", "top", "left", "corner", "at", "upper", "near", "middle",
                       "right", "on", "side", "along", "edge", "bottom", "lower"},
}


def test_negatives_change_one_attribute_in_the_same_words() -> None:
    data = _scenes(40)
    for i in range(len(data)):
        sample = data[i]
        true = sample["captions"]["long"]
        for kind in KINDS:
            rng = np.random.default_rng([0, i, KINDS.index(kind)])
            negatives = hard_negative_captions(sample, kind, 3, rng)
            assert len(negatives) == 3 and len(set(negatives)) == 3
            again = hard_negative_captions(sample, kind, 3,
                                           np.random.default_rng([0, i, KINDS.index(kind)]))
            assert again == negatives
            for negative in negatives:
                words, new_words = " ".join(true).split(), negative.split()
                changed = [op for op in difflib.SequenceMatcher(a=words, b=new_words).get_opcodes()
                           if op[0] != "equal"]
                assert changed, negative
                sentence = {len(" ".join(words[:a]).split(".")) for _, a, _, _, _ in changed}
                assert len(sentence) == 1, (true, negative)   # one sentence touched
                old = {w.strip(".,").lower() for _, a0, a1, _, _ in changed for w in words[a0:a1]}
                new = {w.strip(".,").lower() for *_, b0, b1 in changed
                       for w in new_words[b0:b1]}
                assert old | new <= _KIND_WORDS[kind], (kind, old, new)


def _dominant_features(sample: dict) -> torch.Tensor:
    """One-hot dominant colour + dominant shape + background colour (24 dims)."""
    dominant = sample["objects"][0]
    v = torch.zeros(24)
    v[list(COLORS).index(dominant["color"])] = 1
    v[8 + SHAPES.index(dominant["shape"])] = 1
    v[16 + list(BACKGROUNDS).index(sample["background"]["color"])] = 1
    return v


def _caption_features(caption: str) -> torch.Tensor:
    """The same features read from a caption: colour and shape words of its first sentence
    (the dominant object's), background word of its last; small objects are not seen."""
    sentences = [s for s in caption.split(".") if s.strip()]
    first, last = sentences[0].lower().split(), sentences[-1].lower().split()
    v = torch.zeros(24)
    for j, c in enumerate(COLORS):
        v[j] = float(c in first)
    for j, s in enumerate(SHAPES):
        v[8 + j] = float(s in first)
    for j, b in enumerate(BACKGROUNDS):
        v[16 + j] = float(b in last)
    return v


@pytest.mark.parametrize("num_negatives", [1, 3])
def test_hard_negatives_of_a_model_that_sees_only_the_dominant_object(num_negatives) -> None:
    data = _scenes(24)
    samples = [data[i] for i in range(len(data))]
    vocab = Vocabulary()
    sees = FakeEncoder(lambda i: _dominant_features(samples[i]), _caption_features, vocab)
    blind = FakeEncoder(lambda i: -_dominant_features(samples[i]), _caption_features, vocab)
    ev = HardNegativeEvaluator(data, IndexTransform([s["image"] for s in samples]), vocab,
                               num_negatives=num_negatives)
    out = ev(sees)
    chance = 100.0 / (num_negatives + 1)
    # dominant colour / shape and background: the true caption matches all 3 features (cos 1),
    # a negative only 2 (cos 2/3): always right. Small-object negatives embed exactly like the
    # true caption: every negative ties, credit 1 / (1 + K) = chance.
    for kind in KINDS:
        assert out[f"{kind}_chance"] == pytest.approx(chance)
        expected = 100.0 if kind in ("dominant_color", "dominant_shape", "background") else chance
        assert out[kind] == pytest.approx(expected), kind
    assert out["mean"] == pytest.approx((300.0 + 3 * chance) / 6)
    assert out["mean_chance"] == pytest.approx(chance)
    # the same features with the image sign flipped: a negative (cos -2/3) always beats the
    # true caption (cos -1)
    out = ev(blind)
    assert [out[k] for k in ("dominant_color", "dominant_shape", "background")] == [0, 0, 0]
    assert out["small_shape"] == pytest.approx(chance)


# -------------------------------------------------------------------- object retrieval
def _object_dataset():
    """4 scenes with hand-picked small objects; each caption's sentences are unique strings."""
    def scene(i, smalls):
        objects = [{"shape": "square", "color": "blue", "size": "large", "position": "center"}]
        objects += [{"shape": s, "color": c, "size": "small", "position": p} for s, c, p in smalls]
        long = [f"Scene {i} has a large blue square."]
        long += [f"Scene {i} has a small {c} {s} at the {p}." for s, c, p in smalls]
        long.append(f"Scene {i} has a gray background.")
        return {"image": Image.new("RGB", (4, 4), (10 * i, 0, 0)), "objects": objects,
                "captions": {"long": long}, "key": f"fake-{i}"}
    return [scene(0, [("circle", "red", "top left"), ("star", "green", "bottom")]),
            scene(1, [("circle", "red", "top left")]),
            scene(2, [("circle", "red", "bottom")]),
            scene(3, [("ring", "yellow", "right")])]


def test_object_retrieval_by_hand() -> None:
    data = _object_dataset()
    # query sentence → its scores against scenes 0..3 (image i embeds as the i-th unit vector)
    rows = {"Scene 0 has a small red circle at the top left.": [0.9, 0.1, 0.5, 0.3],
            "Scene 0 has a small green star at the bottom.": [0.2, 0.4, 0.8, 0.6],
            "Scene 1 has a small red circle at the top left.": [0.5, 0.5, 0.5, 0.5],
            "Scene 2 has a small red circle at the bottom.": [0.1, 0.2, 0.9, 0.3],
            "Scene 3 has a small yellow ring at the right.": [0.4, 0.3, 0.2, 0.1]}
    vocab = Vocabulary()
    model = FakeEncoder(lambda i: F.one_hot(torch.tensor(i), 4).float(),
                        lambda text: torch.tensor(rows[text]), vocab)
    ev = ObjectRetrievalEvaluator(data, IndexTransform([s["image"] for s in data]), vocab,
                                  ks=(1, 2))
    out = ev(model)
    h4 = 1 + 1 / 2 + 1 / 3 + 1 / 4
    chance_ap = {1: h4 / 4, 2: h4 / 4 + (4 - h4) / 12, 3: h4 / 4 + 2 * (4 - h4) / 12}
    # object (shape, colour, position): positives {0,1} {0} {0,1} {2} {3}
    assert out["object/positives"] == pytest.approx(7 / 5)
    assert out["object/mAP"] == pytest.approx(100 * (0.75 + 0.25 + chance_ap[2] + 1 + 0.25) / 5)
    assert out["object/R@1"] == pytest.approx(100 * (1 + 0 + 0.5 + 1 + 0) / 5)
    assert out["object/R@2"] == pytest.approx(100 * (1 + 0 + 5 / 6 + 1 + 0) / 5)
    assert out["object/mAP_chance"] == pytest.approx(
        100 * (2 * chance_ap[2] + 3 * chance_ap[1]) / 5)
    assert out["object/R@1_chance"] == pytest.approx(100 * 7 / 4 / 5)
    # shape_color: positives {0,1,2} {0} {0,1,2} {0,1,2} {3}; q0 ranks 1,2,4; q3 ranks 1,3,4
    assert out["shape_color/positives"] == pytest.approx(11 / 5)
    assert out["shape_color/mAP"] == pytest.approx(
        100 * ((1 + 1 + 3 / 4) / 3 + 0.25 + chance_ap[3] + (1 + 2 / 3 + 3 / 4) / 3 + 0.25) / 5)
    assert out["shape_color/R@1"] == pytest.approx(100 * (1 + 0 + 3 / 4 + 1 + 0) / 5)
    assert out["shape_color/R@2"] == pytest.approx(100 * (1 + 0 + 1 + 1 + 0) / 5)
    assert out["shape_color/mAP_chance"] == pytest.approx(
        100 * (3 * chance_ap[3] + 2 * chance_ap[1]) / 5)


def test_object_retrieval_positives_on_real_scenes() -> None:
    data = _scenes(60)
    ev = ObjectRetrievalEvaluator(data, EvalCrop(size=32), ClipTokenizer(77))
    _, _, positives = ev._prepare()
    exact, loose = positives["object"], positives["shape_color"]
    assert exact.shape == loose.shape and exact.shape[1] == 60
    assert bool((exact <= loose).all()) and bool(exact.any(dim=1).all())
    smalls = [data[i]["objects"][1:] for i in range(60)]
    queries = [(i, o) for i in range(60) for o in smalls[i]]
    assert len(queries) == exact.shape[0]
    for q, (i, obj) in enumerate(queries):
        assert bool(exact[q, i])                                    # its own scene holds it
        for name, attrs in (("object", ("shape", "color", "position")),
                            ("shape_color", ("shape", "color"))):
            holders = [j for j in range(60) if any(
                all(o[a] == obj[a] for a in attrs) for o in smalls[j])]
            assert positives[name][q].nonzero().flatten().tolist() == holders


# ------------------------------------------------------------------ segmentation by size
def test_size_split_metrics_by_hand() -> None:
    # classes 0 background, 1 circle, 2 square; the dominant circle is instance 1, small
    # squares are instances 2 and 3 (3 drawn over the dominant circle)
    mask = torch.tensor([[1, 1, 0, 2], [1, 1, 0, 2], [1, 2, 0, 0], [0, 0, 0, 0]])
    inst = torch.tensor([[1, 1, 0, 2], [1, 1, 0, 2], [1, 3, 0, 0], [0, 0, 0, 0]])
    pred = torch.tensor([[1, 1, 0, 0], [1, 2, 0, 2], [2, 2, 0, 1], [0, 0, 0, 0]])
    targets = size_split_targets(mask, inst, ["large", "small", "small"])
    small = object_group_metrics(confusion_matrix(pred, targets["small"], 3))
    dominant = object_group_metrics(confusion_matrix(pred, targets["dominant"], 3))
    # small (dominant pixels ignored): square TP 2, GT 3, predicted 2 → 2/3; circle only
    # predicted (one background pixel) → 0; pixel accuracy 2 of 3
    assert small["mIoU"] == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert small["pixel_acc"] == pytest.approx(100 * 2 / 3)
    # dominant (small pixels ignored): circle TP 3, GT 5, predicted 4 → 3/6; square only
    # predicted → 0; pixel accuracy 3 of 5
    assert dominant["mIoU"] == pytest.approx(100 * (0.5 + 0) / 2)
    assert dominant["pixel_acc"] == pytest.approx(60.0)
    # background over all pixels: TP 7, GT 8, predicted 8 → 7/9
    assert float(per_class_iou(confusion_matrix(pred, mask, 3))[0]) == pytest.approx(7 / 9)


def _with_predictions(ev: SyntheticSegmentationEvaluator, predict) -> None:
    ev.runner.predictions = lambda model, samples: ((s, predict(s)) for s in samples)


def test_segmentation_split_on_scenes_with_chosen_predictions() -> None:
    data = _scenes(6)
    model = build_dual_encoder("tiny-16").eval()
    ev = SyntheticSegmentationEvaluator(data, ClipTokenizer(77), templates=["a {}."])
    _with_predictions(ev, lambda s: s["mask"].clone())
    perfect = ev(model)
    assert all(perfect[k] == 100.0 for k in ("small/mIoU", "small/pixel_acc", "dominant/mIoU",
                                             "dominant/pixel_acc", "background/IoU", "mIoU"))

    def small_as_background(s):
        return s["mask"].masked_fill(s["instances"] > 1, 0)
    _with_predictions(ev, small_as_background)
    out = ev(model)
    background = sum(int((data[i]["mask"] == 0).sum()) for i in range(6))
    small = sum(int((data[i]["instances"] > 1).sum()) for i in range(6))
    assert out["small/mIoU"] == 0.0 and out["small/pixel_acc"] == 0.0
    assert out["dominant/mIoU"] == 100.0 and out["dominant/pixel_acc"] == 100.0
    assert out["background/IoU"] == pytest.approx(100 * background / (background + small))
    assert out["background/IoU"] == pytest.approx(out["IoU/background"])


# -------------------------------------------------------------- batch-size independence
def test_results_do_not_depend_on_the_batch_size() -> None:
    torch.manual_seed(0)
    model = build_dual_encoder("tiny-16").eval()
    data = _scenes(12)
    for name in ("synthetic_hard_negatives", "synthetic_object_retrieval"):
        results = [EVALUATORS.get(name)(data, EvalCrop(size=32), ClipTokenizer(77),
                                        batch_size=b)(model) for b in (1, 7, 64)]
        assert len(results[0]) >= 14
        for other in results[1:]:
            assert other.keys() == results[0].keys()
            for key in results[0]:
                assert other[key] == pytest.approx(results[0][key], abs=1e-9), (name, key)
    seg = [SyntheticSegmentationEvaluator(data, ClipTokenizer(77), templates=["a {}."],
                                          max_images=3, crop_batch_size=b)(model)
           for b in (1, 7, 64)]
    for other in seg[1:]:
        for key in ("small/mIoU", "dominant/mIoU", "background/IoU", "mIoU"):
            assert other[key] == pytest.approx(seg[0][key], abs=1e-9), key


# --------------------------------------------------------------------------- bad input
class _Scenes(list):
    """Scenes as a list, with the segmentation classes of the synthetic dataset."""

    @staticmethod
    def segmentation_classes():
        return SyntheticScenes.segmentation_classes()


def _without(field: str, count: int = 3) -> _Scenes:
    data = _scenes(count)
    out = _Scenes()
    for i in range(count):
        sample = data[i]
        sample.pop(field)
        out.append(sample)
    return out


@pytest.mark.parametrize("build, field", [
    (lambda d: HardNegativeEvaluator(d, EvalCrop(size=32), ClipTokenizer(77)), "wording"),
    (lambda d: HardNegativeEvaluator(d, EvalCrop(size=32), ClipTokenizer(77)), "background"),
    (lambda d: ObjectRetrievalEvaluator(d, EvalCrop(size=32), ClipTokenizer(77)), "objects"),
    (lambda d: SyntheticSegmentationEvaluator(d, ClipTokenizer(77)), "instances"),
    (lambda d: SyntheticSegmentationEvaluator(d, ClipTokenizer(77)), "mask"),
])
def test_scenes_without_a_needed_field_stop_with_one_line(build, field, capsys) -> None:
    with pytest.raises(DataError, match=f"scene val-00000000 has no '{field}' field"):
        build(_without(field))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda args: build(_without(field)), None)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"'{field}'" in err[0]


def test_a_later_scene_without_the_field_stops_too() -> None:
    data = _scenes(3)
    scenes = _Scenes(data[i] for i in range(3))
    del scenes[2]["wording"]
    ev = HardNegativeEvaluator(scenes, EvalCrop(size=32), ClipTokenizer(77))
    with pytest.raises(DataError, match="scene val-00000002 has no 'wording' field"):
        ev(build_dual_encoder("tiny-16"))


@pytest.mark.parametrize("evaluator", [HardNegativeEvaluator, ObjectRetrievalEvaluator])
def test_scene_evaluators_refuse_an_empty_dataset_and_clamp_num_samples(evaluator) -> None:
    with pytest.raises(DataError, match="the dataset is empty"):
        evaluator(_Scenes(), EvalCrop(size=32), ClipTokenizer(77))
    data = _scenes(3)
    scenes = _Scenes(data[i] for i in range(3))
    assert evaluator(scenes, EvalCrop(size=32), ClipTokenizer(77), num_samples=2).num_samples == 2
    assert evaluator(scenes, EvalCrop(size=32), ClipTokenizer(77), num_samples=9).num_samples == 3
    assert evaluator(scenes, EvalCrop(size=32), ClipTokenizer(77)).num_samples == 3
