"""COSMOS text crops: sentences sampled from long captions (reference/cosmos-official.md §3.2)."""
from __future__ import annotations

import random
import re
from typing import Dict, List, Sequence, Union

from cosmos.registry import TEXT_CROPS

# The official DreamLIP recaption keys, in the order the official code concatenates them.
DREAMLIP_KEYS = ("raw_caption", "shortIB_captions", "shortSV_captions", "shortLLA_captions",
                 "longIB_captions", "longSV_captions", "longLLA_captions")
_SPLIT = re.compile(r"\n|</s>|\.")


def split_caption(text: str) -> List[str]:
    """Split on newlines, the literal ``</s>`` and every ``.``; strip; drop empties.

    As the official splitter, this also splits decimals and abbreviations ("3.5" → "3", "5").
    """
    return [part.strip() for part in _SPLIT.split(text) if part.strip()]


def _sentences(value: Union[str, Sequence[str], None]) -> List[str]:
    if not value:
        return []
    if isinstance(value, str):
        return split_caption(value)
    return [part for item in value if item for part in split_caption(item)]  # as if pre-split


def draw_sentences(sentences: Sequence[str], n: int, rng: random.Random) -> List[str]:
    """The official draw: ``rng.sample`` when there are enough sentences; otherwise the whole
    list repeated ⌊n/|S|⌋ times in order, followed by a sample of n mod |S|."""
    if not sentences:
        raise ValueError("cannot draw text crops from a caption with no sentences")
    if len(sentences) >= n:
        return rng.sample(list(sentences), n)
    repeats, rest = divmod(n, len(sentences))
    return list(sentences) * repeats + rng.sample(list(sentences), rest)


@TEXT_CROPS.register(name="cosmos_textcrop")
class TextCrop:
    """``num_global`` global captions (1…max_global_sentences sentences joined by ". ") and
    ``num_captions − num_global`` single-sentence local captions.

    The sentence pool concatenates ``pools`` in order (each a list of sentences or a string that
    is split). Samples that carry the DreamLIP keys use those instead, in the official order.
    Returns a list of ``num_captions`` strings: [global1, global2, local1, …].
    """

    def __init__(self, num_captions: int = 8, num_global: int = 2, max_global_sentences: int = 5,
                 pools: Sequence[str] = ("raw", "short", "long"), separator: str = ". ") -> None:
        if not 0 < num_global <= num_captions:
            raise ValueError(f"need 0 < num_global <= num_captions, got {num_global}, {num_captions}")
        self.num_captions, self.num_global = num_captions, num_global
        self.max_global_sentences, self.pools, self.separator = (
            max_global_sentences, tuple(pools), separator)

    def sentence_pool(self, captions: Dict) -> List[str]:
        keys = DREAMLIP_KEYS if any(k in captions for k in DREAMLIP_KEYS) else self.pools
        return [s for key in keys for s in _sentences(captions.get(key))]

    def __call__(self, captions: Dict, rng: random.Random) -> List[str]:
        pool = self.sentence_pool(captions)
        out = [self.separator.join(draw_sentences(pool, rng.randint(1, self.max_global_sentences), rng))
               for _ in range(self.num_global)]
        return out + draw_sentences(pool, self.num_captions - self.num_global, rng)


@TEXT_CROPS.register(name="pixelprose_textcrop")
class PixelProseTextCrop(TextCrop):
    """PixelProse: the pool is [the unsplit caption] + its sentences (``caption_key``)."""

    def __init__(self, caption_key: str = "caption", **kwargs) -> None:
        super().__init__(**kwargs)
        self.caption_key = caption_key

    def sentence_pool(self, captions: Dict) -> List[str]:
        text = captions.get(self.caption_key) or ""
        return ([text] if text else []) + split_caption(text)


@TEXT_CROPS.register(name="full_caption_repeated")
class FullCaptionRepeated:
    """The "no text crops" ablation: every one of the ``num_captions`` crops is the full caption."""

    def __init__(self, num_captions: int = 8, pool: str = "long") -> None:
        self.num_captions, self.pool = num_captions, pool

    def __call__(self, captions: Dict, rng: random.Random) -> List[str]:
        value = captions[self.pool]
        text = value if isinstance(value, str) else " ".join(value)
        return [text] * self.num_captions
