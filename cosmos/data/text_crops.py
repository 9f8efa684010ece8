"""COSMOS text crops: sentences drawn from (long) captions (arXiv 2412.01814 §3;
official ``src/training/data.py::sample_dict``, mode ``textcrop``).

A text policy maps a sample's captions dict and a ``random.Random`` to a list of strings
(tokenised later to (num_captions, L)). Sentence pools are built with the official splitter,
which splits on every ``.`` — so decimals and abbreviations split too ("3.5" → "3", "5").

Pool names → caption keys (``POOL_KEYS``): ``"raw"`` → raw, raw_caption; ``"short"`` → short,
shortIB_captions, shortSV_captions, shortLLA_captions; ``"long"`` → long, longIB_captions,
longSV_captions, longLLA_captions; any other name is a key itself. So the default
``pools=("raw", "short", "long")`` reads the synthetic captions format and, on DreamLIP JSONs,
gives the official order raw, shortIB, shortSV, shortLLA, longIB, longSV, longLLA.
"""
from __future__ import annotations

import random
import re
import reprlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from cosmos.registry import TEXT_CROPS

__all__ = ["POOL_KEYS", "split_caption", "draw_sentences", "TextCrop", "SampledCaption",
           "PixelProseTextCrop",
           "FullCaptionRepeated"]

POOL_KEYS: Dict[str, Tuple[str, ...]] = {
    "raw": ("raw", "raw_caption"),
    "short": ("short", "shortIB_captions", "shortSV_captions", "shortLLA_captions"),
    "long": ("long", "longIB_captions", "longSV_captions", "longLLA_captions"),
}
_SPLIT = re.compile(r"\n|</s>|\.")
CaptionValue = Union[str, Sequence[str], None]


def split_caption(text: str) -> List[str]:
    """The official splitter: split on newline, ``</s>`` and every ``.``; strip; drop empties."""
    return [part.strip() for part in _SPLIT.split(text) if part.strip()]


def to_sentences(value: CaptionValue) -> List[str]:
    """A caption value (a string or a list of sentences) → its sentences.

    List items are split too, which is what the official offline pre-split does to the shards
    (a no-op on already split lists; it drops the trailing ``.`` of the synthetic sentences).
    """
    if not value:
        return []
    items = [value] if isinstance(value, str) else value
    return [sentence for item in items if item for sentence in split_caption(item)]


def draw_sentences(sentences: Sequence[str], n: int, rng: random.Random) -> List[str]:
    """The official draw of ``n`` sentences from S (``random_sample_from_list``).

    |S| ≥ n → ``rng.sample(S, n)``; otherwise S repeated ⌊n/|S|⌋ times in its original order,
    then ``rng.sample(S, n mod |S|)``. |S| = 0 → ValueError (the official code divides by zero).
    """
    pool = list(sentences)
    if not pool:
        raise ValueError(f"cannot draw {n} sentences from an empty sentence list")
    if len(pool) >= n:
        return rng.sample(pool, n)
    repeats, rest = divmod(n, len(pool))
    return pool * repeats + rng.sample(pool, rest)


def _describe(captions: Mapping) -> str:
    return reprlib.repr(dict(captions))


@TEXT_CROPS.register(name="cosmos_textcrop")
class TextCrop:
    """``num_global`` global captions and ``num_captions − num_global`` local captions.

    S = the sentences of ``pools`` in order (see ``POOL_KEYS``; missing/empty keys are skipped).
    Each global caption: n = ``rng.randint(1, max_global_sentences)``, ``draw_sentences(S, n)``
    joined by ``separator``; then all locals at once: ``draw_sentences(S, k − num_global)``,
    one sentence each. Returns ``[global1, global2, local1, …]`` (``num_captions`` strings).
    """

    def __init__(self, num_captions: int = 8, num_global: int = 2, max_global_sentences: int = 5,
                 pools: Sequence[str] = ("raw", "short", "long"), separator: str = ". ") -> None:
        if not 0 < num_global <= num_captions or max_global_sentences < 1:
            raise ValueError("need 0 < num_global <= num_captions and max_global_sentences >= 1, "
                             f"got {num_global}, {num_captions}, {max_global_sentences}")
        self.num_captions, self.num_global = num_captions, num_global
        self.max_global_sentences, self.separator = max_global_sentences, separator
        self.pools = (pools,) if isinstance(pools, str) else tuple(pools)

    def keys(self) -> List[str]:
        """The caption keys read, in order."""
        return [key for pool in self.pools for key in POOL_KEYS.get(pool, (pool,))]

    def sentence_pool(self, captions: Mapping) -> List[str]:
        """S: every sentence of the configured pools, in order."""
        return [s for key in self.keys() for s in to_sentences(captions.get(key))]

    def _global_length(self, rng: random.Random) -> int:
        return rng.randint(1, self.max_global_sentences)

    def __call__(self, captions: Mapping, rng: random.Random) -> List[str]:
        pool = self.sentence_pool(captions)
        if not pool:
            raise ValueError(f"{type(self).__name__}: no sentences under keys {self.keys()} "
                             f"of the sample with captions {_describe(captions)}")
        crops = [self.separator.join(draw_sentences(pool, self._global_length(rng), rng))
                 for _ in range(self.num_global)]
        return crops + draw_sentences(pool, self.num_captions - self.num_global, rng)


@TEXT_CROPS.register(name="sampled_caption")
class SampledCaption(TextCrop):
    """One caption per sample for the CLIP/SigLIP baselines on recaptioned data: 1 to
    ``max_global_sentences`` sentences drawn from the pools exactly as a COSMOS global caption
    (the same text distribution, one view). Returns a string (→ tokens (L,))."""

    def __init__(self, max_global_sentences: int = 5,
                 pools: Sequence[str] = ("raw", "short", "long"), separator: str = ". ") -> None:
        super().__init__(num_captions=1, num_global=1, max_global_sentences=max_global_sentences,
                         pools=pools, separator=separator)

    def __call__(self, captions: Mapping, rng: random.Random) -> str:  # type: ignore[override]
        return super().__call__(captions, rng)[0]


@TEXT_CROPS.register(name="pixelprose_textcrop")
class PixelProseTextCrop(TextCrop):
    """PixelProse: S = [original caption, unsplit] + ``split_caption(captions[caption_key])``.

    The reference names only ``json["caption"]`` and an "original_caption"; whether the latter is
    a separate field (PixelProse's alt-text) or the unsplit caption itself is not determinable.
    ``original_key`` names the field; when it is None or absent from a sample, the unsplit
    caption is used. A list value is joined by spaces to form the unsplit text.
    """

    def __init__(self, caption_key: str = "caption",
                 original_key: Optional[str] = "original_caption", **kwargs) -> None:
        super().__init__(pools=(caption_key,), **kwargs)
        self.caption_key, self.original_key = caption_key, original_key

    def keys(self) -> List[str]:
        return [k for k in (self.original_key, self.caption_key) if k]

    def sentence_pool(self, captions: Mapping) -> List[str]:
        caption = _joined(captions.get(self.caption_key))
        original = _joined(captions.get(self.original_key)) if self.original_key else ""
        first = (original or caption).strip()
        return ([first] if first else []) + split_caption(caption)


@TEXT_CROPS.register(name="full_caption_repeated")
class FullCaptionRepeated:
    """The "no text crops" ablation: each of the ``num_captions`` text crops (global and local)
    is the full ``pool`` caption (a list of sentences is joined by spaces)."""

    def __init__(self, num_captions: int = 8, pool: str = "long") -> None:
        self.num_captions, self.pool = num_captions, pool

    def __call__(self, captions: Mapping, rng: random.Random) -> List[str]:
        text = _joined(captions.get(self.pool))
        if not text:
            raise ValueError(f"FullCaptionRepeated: no caption under {self.pool!r} "
                             f"in {_describe(captions)}")
        return [text] * self.num_captions


def _joined(value: CaptionValue) -> str:
    if not value:
        return ""
    return value if isinstance(value, str) else " ".join(item for item in value if item)
