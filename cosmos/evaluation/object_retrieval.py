"""Small-object retrieval on held-out synthetic scenes where every scene that holds the
described object is a correct answer.

Queries: every sentence of a held-out long caption about a small object ("There is a small red
circle in the top left corner."). Candidates: the held-out scene images. Two definitions of a
correct image, both reported:

* ``object``: the scene holds a small object with the sentence's shape, colour **and position**
  (grid cell) — everything the sentence states (on 500 scenes, about 3 per query);
* ``shape_color``: the scene holds a small object with the sentence's shape and colour, at any
  position (about 16 per query on 500 scenes).

Metrics (percent, ties in expectation, :mod:`cosmos.evaluation.ranking`): text→image ``mAP``
and multi-positive ``R@k`` (a hit when any correct image is among the first k), each with its
chance level for the same positives (``R@k_chance`` = mean over queries of
``1 - C(N-P, k) / C(N, k)``; ``mAP_chance`` = mean of the exact expected AP of a random
ranking), and ``positives``, the mean number of correct images per query.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from cosmos.evaluation.ranking import multi_positive_retrieval
from cosmos.evaluation.scenes import embed_scenes, require_fields, scenes_to_evaluate
from cosmos.registry import EVALUATORS
from cosmos.utils.errors import ConfigError, DataError

FIELDS = ("image", "objects", "captions.long")
IDENTITIES = {"object": ("shape", "color", "position"), "shape_color": ("shape", "color")}
NAME = "synthetic_object_retrieval"


@EVALUATORS.register(name=NAME)
class ObjectRetrievalEvaluator:
    """evaluator(model: dual encoder) → ``{object,shape_color}/{mAP,R@k}`` with ``*_chance``
    and ``positives``, in percent.

    Args:
        dataset: held-out scenes with the fields of :data:`FIELDS` (``datasets.synthetic_scenes``;
            ``captions["long"][1 + j]`` is the sentence about ``objects[1 + j]``).
        transform: PIL image → ``{"images": (3, H, W)}``; tokenizer: list of str → (N, L) ids.
        ks: the R@k cut-offs; num_samples: evaluate on the first N scenes (default all).
    """

    def __init__(self, dataset, transform: Callable, tokenizer: Callable,
                 ks: Sequence[int] = (1, 5, 10), batch_size: int = 64,
                 num_samples: Optional[int] = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"{NAME}: batch_size must be >= 1, got {batch_size}")
        if not ks or min(ks) < 1:
            raise ConfigError(f"{NAME}: ks must be positive cut-offs, got {list(ks)}")
        self.dataset, self.transform, self.tokenizer = dataset, transform, tokenizer
        self.ks, self.batch_size = tuple(int(k) for k in ks), batch_size
        self.num_samples = scenes_to_evaluate(dataset, num_samples, FIELDS, NAME)
        self._cache = None

    def _prepare(self):
        """Images, query tokens and the (Q, N) positive masks of each identity, built once."""
        if self._cache is not None:
            return self._cache
        images, queries, query_objects = [], [], []
        held: Dict[str, List[set]] = {name: [] for name in IDENTITIES}
        for i in range(self.num_samples):
            sample = self.dataset[i]
            require_fields(sample, FIELDS, NAME)
            objects, sentences = sample["objects"], list(sample["captions"]["long"])
            if len(sentences) != len(objects) + 1:
                raise DataError(f"{NAME}: scene {sample.get('key', i)} has {len(sentences)} "
                                f"long sentences for {len(objects)} objects; expected one per "
                                f"object plus the background sentence")
            images.append(self.transform(sample["image"])["images"])
            smalls = [o for o in objects if o.get("size") == "small"]
            for name, attrs in IDENTITIES.items():
                held[name].append({tuple(o[a] for a in attrs) for o in smalls})
            for obj, sentence in zip(objects[1:], sentences[1:-1]):
                if obj.get("size") == "small":
                    queries.append(sentence)
                    query_objects.append(obj)
        if not queries:
            raise DataError(f"{NAME}: the {self.num_samples} scenes hold no small object")
        positives = {
            name: torch.tensor([[tuple(obj[a] for a in attrs) in scene for scene in held[name]]
                                for obj in query_objects], dtype=torch.bool)
            for name, attrs in IDENTITIES.items()}
        self._cache = images, self.tokenizer(queries), positives
        return self._cache

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Dict[str, float]:
        images, tokens, positives = self._prepare()
        img, txt = embed_scenes(model, images, tokens, self.batch_size)             # (N,D) (Q,D)
        similarity = txt @ img.T                                                    # (Q, N)
        out: Dict[str, float] = {}
        for name, mask in positives.items():
            for key, value in multi_positive_retrieval(similarity, mask, self.ks).items():
                out[f"{name}/{key}"] = value
        return out
