"""Evaluation results do not depend on the evaluation batch size (batch 1 and 64 agree)."""
from __future__ import annotations

import torch

from cosmos.data import ClipTokenizer
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.transforms import EvalCrop
from cosmos.evaluation.synthetic import SceneEvaluator
from cosmos.models.presets import build_dual_encoder


def test_synthetic_evaluator_batch_1_equals_batch_64() -> None:
    torch.manual_seed(0)
    model = build_dual_encoder("tiny-16").eval()
    ds = SyntheticScenes(num_samples=12, image_size=32, split="val")
    results = [SceneEvaluator(ds, EvalCrop(size=32), ClipTokenizer(77), batch_size=b)(model)
               for b in (1, 64)]
    assert results[0].keys() == results[1].keys() and len(results[0]) >= 13
    for key in results[0]:
        assert abs(results[0][key] - results[1][key]) < 1e-9, key
