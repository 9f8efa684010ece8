"""Ranking metrics with several positives per query, their chance levels, and K-way choice.

Ties are scored by their expectation under a uniformly random order of the tied candidates, so
a model that gives every candidate the same score lands exactly on the chance level (instead of
on 100 % or 0 %, as an optimistic or a pessimistic tie rule would give).

Chance levels are expectations under a uniformly random ranking of the ``N`` candidates, for a
query with ``P`` positives (``H_N = 1 + 1/2 + ... + 1/N``):

* R@k (a hit when any positive is among the first k): ``1 - C(N-P, k) / C(N, k)``;
* AP: ``H_N / N + (P - 1) (N - H_N) / (N (N - 1))`` — from
  ``AP = (1/P) Σ_r rel(r) · (Σ_{s≤r} rel(s)) / r`` with ``E[rel(r)] = P/N`` and
  ``E[rel(r) rel(s)] = P (P-1) / (N (N-1))`` for ``s ≠ r``;
* a choice of the true candidate among itself and ``n`` others: ``1 / (n + 1)``.

Reported chance levels are the means of these over the queries.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch


def _comb_ratio(a: int, b: int, r: int) -> float:
    """C(a, r) / C(b, r) for 0 <= a <= b, r >= 0 (0 when r > a)."""
    if r > a:
        return 0.0
    out = 1.0
    for i in range(r):
        out *= (a - i) / (b - i)
    return out


def hit_probability(num_above: int, tied_negatives: int, tied_positives: int, k: int) -> float:
    """P(a positive is among the first k) when ``num_above`` negatives score strictly above the
    best positive and ``tied_*`` candidates share its score (random order among the tied)."""
    slots = k - num_above
    if slots <= 0:
        return 0.0
    return 1.0 - _comb_ratio(tied_negatives, tied_negatives + tied_positives, slots)


def expected_average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of one query, averaged over random orders of tied scores. scores, positive: (N,)."""
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    num_pos = int(positive.sum())
    if num_pos == 0:
        raise ValueError("a query without positives has no average precision")
    _, starts, sizes = np.unique(-scores, return_index=True, return_counts=True)
    if len(starts) == len(scores):  # no ties: the usual AP
        ranks = np.flatnonzero(positive) + 1.0
        return float(np.mean(np.arange(1, num_pos + 1) / ranks))
    per_group = np.add.reduceat(positive.astype(np.int64), starts)
    before = np.cumsum(per_group) - per_group           # positives ranked above each group
    total = 0.0
    for g in np.flatnonzero(per_group):
        start, m, p = int(starts[g]), int(sizes[g]), int(per_group[g])
        j = np.arange(1, m + 1, dtype=np.float64)       # position inside the tie group
        pair = p * (p - 1) / (m * (m - 1)) if m > 1 else 0.0
        total += float(((p / m) * (before[g] + 1) + (j - 1) * pair) @ (1.0 / (start + j)))
    return total / num_pos


def multi_positive_retrieval(similarity: torch.Tensor, positives: torch.Tensor,
                             ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """Text→image retrieval where a query may have several correct images.

    Args:
        similarity: (Q, N) scores of each query against every candidate.
        positives: (Q, N) bool, True where the candidate is correct for the query; every query
            needs at least one.
    Returns:
        ``mAP`` and ``R@k`` (a hit when any positive is in the top k), in percent, with ties
        in expectation, plus ``mAP_chance`` and ``R@k_chance`` for the same positives and
        ``positives`` = the mean number of positives per query.
    """
    sim = similarity.detach().double().cpu().numpy()
    pos = positives.detach().bool().cpu().numpy()
    if sim.shape != pos.shape or sim.ndim != 2:
        raise ValueError(f"similarity {sim.shape} and positives {pos.shape} must be equal (Q, N)")
    counts = pos.sum(axis=1)
    if (counts == 0).any():
        raise ValueError(f"query {int(np.argmin(counts))} has no positive candidate")
    num_queries, n = sim.shape
    best = np.where(pos, sim, -np.inf).max(axis=1, keepdims=True)                   # (Q, 1)
    above = ((sim > best) & ~pos).sum(axis=1)
    tied_neg = ((sim == best) & ~pos).sum(axis=1)
    tied_pos = ((sim == best) & pos).sum(axis=1)
    out = {"mAP": 100.0 * float(np.mean([expected_average_precision(sim[q], pos[q])
                                         for q in range(num_queries)]))}
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    pair = (n - harmonic) / (n * (n - 1)) if n > 1 else 0.0
    out["mAP_chance"] = 100.0 * float(np.mean(harmonic / n + (counts - 1) * pair))
    for k in ks:
        hits = [hit_probability(int(a), int(t), int(p), k)
                for a, t, p in zip(above, tied_neg, tied_pos)]
        out[f"R@{k}"] = 100.0 * float(np.mean(hits))
        out[f"R@{k}_chance"] = 100.0 * float(np.mean(
            [1.0 - _comb_ratio(n - int(c), n, k) for c in counts]))
    out["positives"] = float(counts.mean())
    return out


def choice_credit(true_score: torch.Tensor, other_scores: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """Credit of choosing the true candidate by the highest score, ties in expectation.

    true_score: (B,); other_scores, valid: (B, K) (``valid`` False marks padding). Returns (B,)
    float64: 0 when another candidate scores higher, else 1 / (1 + number of tied others).
    """
    true_score = true_score.double()[:, None]
    other = other_scores.double()
    higher = ((other > true_score) & valid).any(dim=1)
    ties = ((other == true_score) & valid).sum(dim=1)
    return torch.where(higher, torch.zeros_like(true_score[:, 0]), 1.0 / (1.0 + ties.double()))
