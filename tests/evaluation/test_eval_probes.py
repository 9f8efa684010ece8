"""kNN and linear probes on frozen features: hand-computed votes, separable data, the evaluator."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cosmos.evaluation.probes import (ProbeEvaluator, knn_predict, topk_accuracy,
                                      train_linear_probe)


def test_knn_votes_by_hand() -> None:
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    # k=2: neighbours are train 0 (sim 1.0, class 0) and train 1 (sim 0.8, class 1)
    scores = knn_predict(train, labels, query, num_classes=2, k=2, temperature=0.5)
    assert torch.allclose(scores, torch.tensor([[math.exp(2.0), math.exp(1.6)]]))
    # k=3 adds train 2 (sim 0.0): class 1 gets exp(1.6) + exp(0) = 5.95 < exp(2) = 7.39
    scores = knn_predict(train, labels, query, num_classes=2, k=3, temperature=0.5)
    assert torch.allclose(scores, torch.tensor([[math.exp(2.0), math.exp(1.6) + 1.0]]))
    assert scores.argmax().item() == 0


def test_topk_accuracy_by_hand() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.5], [0.2, 0.3, 0.1]])
    labels = torch.tensor([1, 2, 2])
    out = topk_accuracy(logits, labels, ks=(1, 2, 5))
    # no top5: 3 classes
    assert out == {"top1": pytest.approx(100 / 3), "top2": pytest.approx(200 / 3)}


def test_linear_probe_separates_separable_features() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 3
    labels = torch.arange(4).repeat(25)
    feats = centres[labels] + 0.3 * torch.randn(100, 4, generator=g)
    probe = train_linear_probe(feats, labels, num_classes=4, epochs=200, lr=0.05)
    assert (probe(feats).argmax(1) == labels).float().mean() == 1.0


class ColourModel(nn.Module):
    """encode_image = the mean colour of the image: a frozen, known feature."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_image(self, images, normalize=True):
        f = images.mean(dim=(2, 3))
        return nn.functional.normalize(f, dim=-1) if normalize else f


def test_probe_evaluator_on_colour_classes() -> None:
    colours = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]])
    data = [(colours[i % 3][:, None, None].expand(3, 4, 4).clone(), i % 3) for i in range(30)]
    ev = ProbeEvaluator(data[:21], data[21:], transform=lambda x: x, num_classes=3, k=5,
                        epochs=200, lr=0.1, batch_size=4)
    out = ev(ColourModel())
    assert out["knn_top1"] == 100.0 and out["linear_top1"] == 100.0
    assert "knn_top5" not in out  # only 3 classes
    big = ProbeEvaluator(data[:21], data[21:], transform=lambda x: x, num_classes=3, k=5,
                         epochs=200, lr=0.1, batch_size=64)(ColourModel())
    assert big == out  # evaluation batch size does not change results
