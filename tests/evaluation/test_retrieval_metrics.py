"""retrieval_metrics on small similarity matrices with answers worked out by hand."""
from __future__ import annotations

import pytest
import torch

from cosmos.evaluation import retrieval_metrics


def test_one_caption_per_image() -> None:
    # 3 images × 3 texts; text j describes image j.
    sim = torch.tensor([[0.9, 0.1, 0.3],    # image 0: its text ranks 1st
                        [0.8, 0.5, 0.2],    # image 1: text 1 ranks 2nd (0.8 > 0.5)
                        [0.7, 0.6, 0.1]])   # image 2: text 2 ranks 3rd
    m = retrieval_metrics(sim, torch.tensor([0, 1, 2]), ks=(1, 2, 3))
    assert m["i2t_R@1"] == pytest.approx(100 / 3) and m["i2t_R@2"] == pytest.approx(200 / 3)
    assert m["i2t_R@3"] == 100
    # columns: text 0 → image 0 best (0.9); text 1 → image 2 (0.6) beats image 1 (0.5): rank 2;
    # text 2 → image 0 (0.3) and image 1 (0.2) beat image 2 (0.1): rank 3.
    assert m["t2i_R@1"] == pytest.approx(100 / 3) and m["t2i_R@2"] == pytest.approx(200 / 3)
    assert m["t2i_R@3"] == 100


def test_several_captions_per_image() -> None:
    # 2 images, 4 texts: texts 0,1 → image 0; texts 2,3 → image 1.
    sim = torch.tensor([[0.2, 0.9, 0.5, 0.4],
                        [0.1, 0.3, 0.2, 0.8]])
    m = retrieval_metrics(sim, torch.tensor([0, 0, 1, 1]), ks=(1, 2))
    # image 0: best own text (0.9) ranks 1st → hit@1. image 1: best own text 3 (0.8) 1st → hit@1.
    assert m["i2t_R@1"] == 100.0
    # text 0: 0.2 vs 0.1 → image 0 first ✓; text 1: 0.9 vs 0.3 ✓; text 2: 0.5 vs 0.2 → image 0 ✗;
    # text 3: 0.4 vs 0.8 ✓ → t2i R@1 = 3/4; R@2 = 4/4.
    assert m["t2i_R@1"] == 75.0 and m["t2i_R@2"] == 100.0


def test_image_without_texts_is_ignored_for_i2t() -> None:
    sim = torch.tensor([[0.9, 0.1], [0.5, 0.6], [0.3, 0.2]])
    m = retrieval_metrics(sim, torch.tensor([0, 1]), ks=(1,))
    assert m["i2t_R@1"] == 100.0 and m["t2i_R@1"] == 100.0
