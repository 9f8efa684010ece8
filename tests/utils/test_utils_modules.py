"""eval_mode restores a module's own mode, also after an error; module_device of a module
without parameters is the CPU."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cosmos.evaluation.probes import extract_features
from cosmos.utils.modules import eval_mode, module_device


def test_eval_mode_restores_the_mode_also_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    with eval_mode(model) as inner:
        assert inner is model and not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training  # a model in eval mode stays in eval mode


def test_module_device() -> None:
    assert module_device(nn.ReLU()) == torch.device("cpu")
    assert module_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")


def test_feature_extraction_restores_train_mode_when_a_sample_is_bad() -> None:
    class Encoder(nn.Linear):
        def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
            assert not self.training
            return self(images.flatten(1))

    model = Encoder(4, 2)
    dataset = [(torch.zeros(1, 2, 2), 0), (torch.zeros(1, 2, 2), "no label")]
    with pytest.raises(ValueError, match="no label"):
        extract_features(model, dataset, lambda image: image, batch_size=1)
    assert model.training
    feats, labels = extract_features(model, dataset[:1], lambda image: image, batch_size=1)
    assert feats.shape == (1, 2) and labels.tolist() == [0] and model.training
