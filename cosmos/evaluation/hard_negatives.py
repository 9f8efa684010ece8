"""Hard-negative caption choice on held-out synthetic scenes (in the spirit of ARO and
SugarCrepe): does the image embedding prefer its true caption over captions that differ in
exactly one attribute of one object?

For each scene and each attribute kind of :data:`KINDS`, up to ``num_negatives`` negative
captions are the scene's own long caption re-generated (:func:`cosmos.data.synthetic.long_caption`:
same sentence templates and word choices) with one attribute changed:

* ``small_color`` / ``small_shape`` / ``small_position``: the colour, shape or grid cell of one
  small object (each negative picks its object and its new value together);
* ``dominant_color`` / ``dominant_shape``: the large object's colour or shape;
* ``background``: the background colour name.

Rule for a changed value: it differs from the old one, and the changed scene is one the
generator could have drawn — small objects keep pairwise distinct (shape, colour) pairs and
colours other than the dominant object's, and distinct grid cells other than the center. So a
negative never describes another object of the same scene (no other object has the changed
object's new shape and colour, no two objects share a cell). The (object, value) pairs are drawn
without replacement from all allowed ones by ``np.random.default_rng([seed, scene index, kind
index])``: the same negatives for every model, batch size and number of scenes.

Score = cosine similarity of the normalized image and caption embeddings. A scene counts 1 when
its true caption scores above every negative of the kind, 0 when a negative scores higher, and
1 / (1 + t) when t negatives tie with it (the expectation under a random tie break). Chance is
1 / (n + 1) for n negatives, averaged over the scenes (= 1 / (num_negatives + 1) when every
scene has enough allowed values); a scene with no allowed value for a kind (e.g. no small
object) is left out of that kind.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from cosmos.data.synthetic import BACKGROUNDS, COLORS, SHAPES, SMALL_POSITIONS, long_caption
from cosmos.evaluation.ranking import choice_credit
from cosmos.evaluation.scenes import embed_scenes, require_fields, scenes_to_evaluate
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import ConfigError, DataError

KINDS: Tuple[str, ...] = ("small_color", "small_shape", "small_position", "dominant_color",
                          "dominant_shape", "background")
FIELDS = ("image", "objects", "background", "wording", "captions.long")
NAME = "synthetic_hard_negatives"

Change = Tuple[Optional[int], str]  # (object index or None for the background, new value)


def allowed_changes(objects: Sequence[Dict[str, Any]], background: Dict[str, str],
                    kind: str) -> List[Change]:
    """Every (object index, new value) of ``kind`` allowed by the rule in the module doc."""
    dominant, smalls = objects[0], list(range(1, len(objects)))
    pairs = {(objects[j]["shape"], objects[j]["color"]) for j in smalls}
    if kind == "small_color":
        return [(j, c) for j in smalls for c in COLORS
                if c not in (objects[j]["color"], dominant["color"])
                and (objects[j]["shape"], c) not in pairs]
    if kind == "small_shape":
        return [(j, s) for j in smalls for s in SHAPES
                if s != objects[j]["shape"] and (s, objects[j]["color"]) not in pairs]
    if kind == "small_position":
        taken = {objects[j]["position"] for j in smalls}
        return [(j, p) for j in smalls for p in SMALL_POSITIONS if p not in taken]
    if kind == "dominant_color":
        used = {objects[j]["color"] for j in smalls}
        return [(0, c) for c in COLORS if c != dominant["color"] and c not in used]
    if kind == "dominant_shape":
        return [(0, s) for s in SHAPES if s != dominant["shape"]]
    if kind == "background":
        return [(None, b) for b in BACKGROUNDS if b != background["color"]]
    raise ConfigError(f"{NAME}: unknown attribute kind {kind!r}; expected one of "
                      f"{', '.join(KINDS)}")


def changed_caption(objects: Sequence[Dict[str, Any]], background: Dict[str, str],
                    wording: Dict[str, Any], kind: str, change: Change) -> str:
    """The full caption (sentences joined by spaces) of the scene with ``change`` applied."""
    objects = [dict(o) for o in objects]
    background = dict(background)
    index, value = change
    if kind == "background":
        background["color"] = value
    else:
        objects[index][kind.split("_", 1)[1]] = value  # "color", "shape" or "position"
    return " ".join(long_caption(objects, background, wording))


def hard_negative_captions(sample: Dict[str, Any], kind: str, count: int,
                           rng: np.random.Generator) -> List[str]:
    """Up to ``count`` distinct negative captions of ``kind`` for one scene."""
    options = allowed_changes(sample["objects"], sample["background"], kind)
    picks = rng.choice(len(options), size=min(count, len(options)), replace=False) \
        if options else []
    return [changed_caption(sample["objects"], sample["background"], sample["wording"], kind,
                            options[int(i)]) for i in picks]


@EVALUATORS.register(name=NAME)
class HardNegativeEvaluator:
    """evaluator(model: dual encoder) → ``{<kind>, <kind>_chance, mean, mean_chance}`` in
    percent, one accuracy per attribute kind of :data:`KINDS` (``mean`` over the kinds).

    Args:
        dataset: held-out scenes with the fields of :data:`FIELDS` (``datasets.synthetic_scenes``).
        transform: PIL image → ``{"images": (3, H, W)}``; tokenizer: list of str → (N, L) ids.
        num_negatives: K negatives per scene and kind, chance 1 / (K + 1). The default 1 is
            SugarCrepe's two-way choice; each scene costs 1 + 6 K captions to embed.
        kinds: the attribute kinds to test (default all six).
        seed: seeds the choice of negatives.
        num_samples: evaluate on the first N scenes (default all).
    """

    def __init__(self, dataset, transform: Callable, tokenizer: Callable, num_negatives: int = 1,
                 kinds: Sequence[str] = KINDS, seed: int = 0, batch_size: int = 64,
                 num_samples: Optional[int] = None) -> None:
        if num_negatives < 1:
            raise ConfigError(f"{NAME}: num_negatives must be >= 1, got {num_negatives}")
        if batch_size < 1:
            raise ConfigError(f"{NAME}: batch_size must be >= 1, got {batch_size}")
        self.kinds = tuple(kinds)
        for kind in self.kinds:
            if kind not in KINDS:
                raise ConfigError(f"{NAME}: unknown attribute kind {kind!r}; expected one of "
                                  f"{', '.join(KINDS)}")
        self.dataset, self.transform, self.tokenizer = dataset, transform, tokenizer
        self.num_negatives, self.seed, self.batch_size = int(num_negatives), int(seed), batch_size
        self.num_samples = scenes_to_evaluate(dataset, num_samples, FIELDS, NAME)
        self._cache = None

    def _prepare(self):
        """Images, unique caption tokens, and per scene the index of its true caption and of its
        negatives ((S, kinds, K), -1 = none), built once."""
        if self._cache is not None:
            return self._cache
        images, texts, index = [], [], {}
        true = torch.zeros(self.num_samples, dtype=torch.long)
        negatives = torch.full((self.num_samples, len(self.kinds), self.num_negatives), -1,
                               dtype=torch.long)

        def text_id(text: str) -> int:
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
            return index[text]

        for i in range(self.num_samples):
            sample = self.dataset[i]
            require_fields(sample, FIELDS, NAME)
            sentences = list(sample["captions"]["long"])
            rebuilt = long_caption(sample["objects"], sample["background"], sample["wording"])
            if rebuilt != sentences:
                raise DataError(f"{NAME}: scene {sample.get('key', i)}: its 'wording' does not "
                                f"rebuild its long caption; the negatives would be worded "
                                f"differently")
            images.append(self.transform(sample["image"])["images"])
            caption = " ".join(sentences)
            true[i] = text_id(caption)
            for k, kind in enumerate(self.kinds):
                rng = np.random.default_rng([self.seed, i, KINDS.index(kind)])
                for n, negative in enumerate(hard_negative_captions(sample, kind,
                                                                    self.num_negatives, rng)):
                    if negative == caption:
                        raise DataError(f"{NAME}: scene {sample.get('key', i)}: a {kind} "
                                        f"negative equals the true caption")
                    negatives[i, k, n] = text_id(negative)
        self._cache = images, self.tokenizer(texts), true, negatives
        return self._cache

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Dict[str, float]:
        images, tokens, true, negatives = self._prepare()
        img, txt = embed_scenes(model, images, tokens, self.batch_size)             # (S,D) (T,D)
        true_score = (img * txt[true]).sum(-1)                                      # (S,)
        valid = negatives >= 0                                                      # (S, k, K)
        neg_score = torch.einsum("sd,skjd->skj", img, txt[negatives.clamp(min=0)])
        out: Dict[str, float] = {}
        for k, kind in enumerate(self.kinds):
            used = valid[:, k].any(dim=1)
            if not used.any():
                continue
            credit = choice_credit(true_score[used], neg_score[used, k], valid[used, k])
            chance = 1.0 / (1.0 + valid[used, k].sum(dim=1).double())
            out[kind] = 100.0 * float(credit.mean())
            out[f"{kind}_chance"] = 100.0 * float(chance.mean())
        measured = [kind for kind in self.kinds if kind in out]
        if measured:
            out["mean"] = float(np.mean([out[kind] for kind in measured]))
            out["mean_chance"] = float(np.mean([out[f"{kind}_chance"] for kind in measured]))
        return out
