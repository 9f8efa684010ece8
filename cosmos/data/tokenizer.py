"""CLIP byte-level BPE tokenizer (the vocabulary ships inside open_clip_torch; nothing
downloads)."""
from __future__ import annotations

from functools import lru_cache
from typing import List, Sequence, Tuple, Union

import torch

SOT_TOKEN = 49406
EOT_TOKEN = 49407


@lru_cache(maxsize=1)
def _bpe():
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer()


def _join_pieces(pieces: Sequence[str]) -> str:
    """BPE pieces (byte-level unicode, ``</w>`` word ends) → the UTF-8 text they spell."""
    bpe = _bpe()
    text = "".join(pieces).replace("</w>", "")
    raw = bytearray(bpe.byte_decoder[c] for c in text if c in bpe.byte_decoder)
    return raw.decode("utf-8", errors="replace")


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

    def decode_words(self, ids: Sequence[int]) -> List[Tuple[str, List[int]]]:
        """Token ids of one text → its words: [(word, positions of the word's tokens in ids)].

        ``ids``: this tokenizer's output (L,) (SOT, BPE pieces, EOT, padding) or bare
        :meth:`encode` ids. BPE pieces merge into a word up to the piece that ends one
        (``</w>``); punctuation is a word of its own; SOT, EOT and what follows EOT are left
        out. A text cut inside a word ends with that word's first pieces.
        """
        ids = [int(t) for t in ids]
        bpe = _bpe()
        end = ids.index(EOT_TOKEN) if EOT_TOKEN in ids else len(ids)
        words: List[Tuple[str, List[int]]] = []
        pieces: List[str] = []
        positions: List[int] = []
        for pos in range(1 if ids[:1] == [SOT_TOKEN] else 0, end):
            piece = bpe.decoder.get(ids[pos], "")
            pieces.append(piece)
            positions.append(pos)
            if piece.endswith("</w>"):
                words.append((_join_pieces(pieces), positions))
                pieces, positions = [], []
        if pieces:
            words.append((_join_pieces(pieces), positions))
        return words

    def __getstate__(self):
        return {"context_length": self.context_length}

    def __setstate__(self, state):
        self.context_length = state["context_length"]
