"""CLIP byte-level BPE tokenizer (the vocabulary ships inside open_clip_torch; nothing downloads)."""
from __future__ import annotations

from functools import lru_cache
from typing import List, Sequence, Union

import torch

SOT_TOKEN = 49406
EOT_TOKEN = 49407


@lru_cache(maxsize=1)
def _bpe():
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer()


class ClipTokenizer:
    """Text → (context_length,) int64: [SOT] + BPE + [EOT], zero padded.

    Longer texts are cut to ``context_length`` and the last position is set to EOT, as OpenCLIP
    and the official COSMOS code do. Cleaning (ftfy, HTML unescape, whitespace, lower-case) is
    OpenCLIP's.
    """

    vocab_size = 49408

    def __init__(self, context_length: int = 77) -> None:
        self.context_length = int(context_length)

    @lru_cache(maxsize=65536)
    def encode(self, text: str) -> tuple:
        """BPE ids of ``text`` without SOT/EOT."""
        return tuple(_bpe().encode(text))

    def __call__(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """str → (L,); list of n str → (n, L)."""
        single = isinstance(texts, str)
        batch: List[str] = [texts] if single else list(texts)
        out = torch.zeros(len(batch), self.context_length, dtype=torch.long)
        for row, text in enumerate(batch):
            ids = [SOT_TOKEN, *self.encode(text), EOT_TOKEN]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = EOT_TOKEN
            out[row, : len(ids)] = torch.tensor(ids)
        return out[0] if single else out

    def __getstate__(self):
        return {"context_length": self.context_length}

    def __setstate__(self, state):
        self.context_length = state["context_length"]
