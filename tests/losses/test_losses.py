"""CLIP InfoNCE against values worked out by hand and against a direct transcription."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cosmos.losses import ClipInfoNCE, infonce


def test_infonce_two_pairs_by_hand() -> None:
    # a = b = identity rows: logits = s·I, so each CE = -log(e^s / (e^s + e^0)).
    a = torch.eye(2)
    s = torch.tensor(2.0)
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 1.0))
    assert abs(float(infonce(a, a, s)) - expected) < 1e-6


def test_infonce_asymmetric_by_hand() -> None:
    # image rows [1,0], [0,1]; text rows [1,0], [0.6,0.8]; scale 1.
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits img→txt = [[1, .6], [0, .8]]; txt→img = [[1, 0], [.6, .8]]

    def ce(row, target):
        return -(row[target] - math.log(sum(math.exp(v) for v in row)))
    i2t = (ce([1, .6], 0) + ce([0, .8], 1)) / 2
    t2i = (ce([1, 0], 0) + ce([.6, .8], 1)) / 2
    assert abs(float(infonce(img, txt, torch.tensor(1.0))) - 0.5 * (i2t + t2i)) < 1e-6


def test_clip_loss_matches_transcription_and_chance() -> None:
    torch.manual_seed(0)
    img = F.normalize(torch.randn(8, 16), dim=-1)
    txt = F.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(14.2857)
    logits = scale * img @ txt.T
    labels = torch.arange(8)
    ref = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    assert torch.allclose(ClipInfoNCE()(img, txt, scale), ref, atol=1e-6)
    same = F.normalize(torch.ones(8, 16), dim=-1)  # collinear embeddings → ln(N)
    assert abs(float(ClipInfoNCE()(same, same, scale)) - math.log(8)) < 1e-5
