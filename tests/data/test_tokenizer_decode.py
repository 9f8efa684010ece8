"""ClipTokenizer.decode_words: token ids back to the words shown on attention maps."""
from __future__ import annotations

import pytest

from cosmos.data.tokenizer import EOT_TOKEN, SOT_TOKEN, ClipTokenizer


def test_known_ids_decode_to_words_with_their_positions() -> None:
    tokenizer = ClipTokenizer(context_length=8)
    ids = tokenizer("A red circle.")
    # a</w> 320, red</w> 736, circle</w> 7117, .</w> 269 in the CLIP vocabulary
    assert ids.tolist() == [SOT_TOKEN, 320, 736, 7117, 269, EOT_TOKEN, 0, 0]
    assert tokenizer.decode_words(ids) == [("a", [1]), ("red", [2]), ("circle", [3]), (".", [4])]
    # bare encode() ids (no SOT / EOT): positions count from 0
    assert tokenizer.decode_words(tokenizer.encode("red, blue")) == [
        ("red", [0]), (",", [1]), ("blue", [2])]
    assert tokenizer.decode_words([]) == []
    assert tokenizer.decode_words(tokenizer("   ")) == []


@pytest.mark.parametrize("text", [
    "A large red circle in the center. A small blue star at the top left.",
    "Über-café, naïve façade: 3 objects!",
    "supercalifragilistic   words",
])
def test_round_trip_with_encode(text: str) -> None:
    """Every word re-encodes to exactly its tokens, the positions tile SOT+1 … EOT-1, and the
    words spell the cleaned text."""
    tokenizer = ClipTokenizer()
    ids = tokenizer(text).tolist()
    words = tokenizer.decode_words(ids)
    eot = ids.index(EOT_TOKEN)
    assert [p for _, positions in words for p in positions] == list(range(1, eot))
    for word, positions in words:
        assert list(tokenizer.encode(word)) == [ids[p] for p in positions]
    assert "".join(w for w, _ in words) == "".join(text.lower().split())


def test_a_text_cut_inside_a_word_ends_with_its_first_pieces() -> None:
    tokenizer = ClipTokenizer(context_length=7)
    ids = tokenizer("a photograph of supercalifragilistic things")
    assert ids.tolist() == [SOT_TOKEN, 320, 8853, 539, 1642, 2857, EOT_TOKEN]
    assert tokenizer.decode_words(ids) == [("a", [1]), ("photograph", [2]), ("of", [3]),
                                           ("supercali", [4, 5])]
