"""Probes on frozen image features: weighted kNN (DINO's protocol) and a linear classifier.

Features are the L2-normalised image embeddings ``encode_image(x, normalize=True)``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.registry import EVALUATORS
from cosmos.utils.modules import eval_mode, module_device


def _image_and_label(item: Any) -> Tuple[Any, int]:
    if isinstance(item, dict):
        return item["image"], int(item["label"])
    image, label = item[0], item[1]
    return image, int(label)


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Sequence, transform: Callable, batch_size: int,
                     max_samples: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) normalised, labels (N,)) of ``dataset`` items ``(image, label)`` or
    dicts."""
    device = module_device(model)
    n = min(len(dataset), max_samples or len(dataset))
    feats, labels = [], []
    with eval_mode(model):
        for start in range(0, n, batch_size):
            images, batch_labels = [], []
            for i in range(start, min(start + batch_size, n)):
                image, label = _image_and_label(dataset[i])
                view = transform(image)
                images.append(view["images"] if isinstance(view, dict) else view)
                batch_labels.append(label)
            out = model.encode_image(torch.stack(images).to(device), normalize=True)
            feats.append(out.float().cpu())
            labels.append(torch.tensor(batch_labels))
    return torch.cat(feats), torch.cat(labels)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
                  ) -> Dict[str, float]:
    """``top{k}`` in percent for each k not larger than the number of classes."""
    out = {}
    for k in ks:
        if k <= logits.shape[1]:
            hit = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
            out[f"top{k}"] = 100.0 * float(hit.double().mean())
    return out


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 20, temperature: float = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Class scores (M, C): each of the k nearest training features (cosine) votes for its label
    with weight ``exp(similarity / temperature)`` (DINO's weighted kNN)."""
    k = min(k, train_feats.shape[0])
    scores = []
    for start in range(0, test_feats.shape[0], chunk):
        sim = test_feats[start:start + chunk] @ train_feats.T                     # (m, N)
        top_sim, top_idx = sim.topk(k, dim=1)                                      # (m, k)
        votes = torch.zeros(sim.shape[0], num_classes, dtype=sim.dtype)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def train_linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, num_classes: int,
                       epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                       seed: int = 0) -> nn.Linear:
    """Logistic regression on frozen features: full-batch AdamW, cross-entropy, fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    probe = nn.Linear(train_feats.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * 0.01)
        probe.bias.zero_()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(probe(train_feats), train_labels).backward()
        optimizer.step()
    return probe


@EVALUATORS.register(name="probes")
class ProbeEvaluator:
    """kNN and linear-probe accuracy of frozen image features.

    ``train_dataset``/``test_dataset`` items are ``(image, label)`` or dicts with ``image`` and
    ``label``. Returns ``knn_top1``/``knn_top5`` and ``linear_top1``/``linear_top5`` (percent).
    """

    def __init__(self, train_dataset, test_dataset, transform: Callable, num_classes: int,
                 methods: Sequence[str] = ("knn", "linear"), k: int = 20,
                 temperature: float = 0.07, epochs: int = 100, lr: float = 1e-2,
                 weight_decay: float = 1e-4, batch_size: int = 64,
                 max_train: Optional[int] = None, max_test: Optional[int] = None) -> None:
        unknown = set(methods) - {"knn", "linear"}
        if unknown:
            raise ValueError(
                f"unknown probe method(s) {sorted(unknown)}; use 'knn' and/or 'linear'")
        self.train_dataset, self.test_dataset = train_dataset, test_dataset
        self.transform = transform
        self.num_classes, self.methods = num_classes, tuple(methods)
        self.k, self.temperature = k, temperature
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.batch_size, self.max_train, self.max_test = batch_size, max_train, max_test

    def __call__(self, model: nn.Module) -> Dict[str, float]:
        train_x, train_y = extract_features(model, self.train_dataset, self.transform,
                                            self.batch_size, self.max_train)
        test_x, test_y = extract_features(model, self.test_dataset, self.transform,
                                          self.batch_size, self.max_test)
        results: Dict[str, float] = {}
        if "knn" in self.methods:
            scores = knn_predict(train_x, train_y, test_x, self.num_classes, self.k,
                                 self.temperature)
            results.update({f"knn_{k}": v for k, v in topk_accuracy(scores, test_y).items()})
        if "linear" in self.methods:
            probe = train_linear_probe(train_x, train_y, self.num_classes, self.epochs, self.lr,
                                       self.weight_decay)
            with torch.no_grad():
                logits = probe(test_x)
            results.update({f"linear_{k}": v for k, v in topk_accuracy(logits, test_y).items()})
        return results
