"""The map-style loader replaces bad items deterministically, counts them, and aborts past a
limit."""
from __future__ import annotations

import pytest

from cosmos.data import ClipTokenizer, ResumableLoader
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.transforms import FullCaption, SingleCrop
from cosmos.utils.errors import BadSampleError, DataError


class SomeBad(SyntheticScenes):
    """Synthetic scenes whose items listed in ``bad`` raise like a corrupt CSV row would."""

    def __init__(self, bad, **kwargs):
        super().__init__(**kwargs)
        self.bad = dict(bad)

    def __getitem__(self, index):
        if index in self.bad:
            raise BadSampleError(self.bad[index], f"item {index}")
        return super().__getitem__(index)


def _loader(bad, **kwargs):
    ds = SomeBad(bad, num_samples=12, image_size=32)
    return ResumableLoader(ds, SingleCrop(size=32), FullCaption(), ClipTokenizer(32),
                           batch_size=4, **kwargs)


def test_bad_items_are_replaced_and_counted() -> None:
    loader = _loader({3: "corrupt_image", 4: "empty_caption"}, max_bad_fraction=0.5)
    it = iter(loader)
    keys = [k for _ in range(3) for k in next(it)["key"]]  # one epoch: 12 positions
    assert "train-00000003" not in keys and "train-00000004" not in keys
    assert len(keys) == 12 and keys.count("train-00000005") >= 2  # 3 and 4 fall through to 5
    m = loader.metrics()
    assert m["data/samples"] == 12 and m["data/corrupt_image"] == 1
    assert m["data/empty_caption"] == 2  # the item-3 position tried 3, 4, 5; the item-4 one 4, 5
    state = loader.state_dict()
    again = _loader({3: "corrupt_image", 4: "empty_caption"})
    again.load_state_dict(state)
    assert again.metrics() == m  # counters survive a resume


def test_too_many_bad_items_stop_the_run() -> None:
    loader = _loader({i: "corrupt_image" for i in range(0, 12, 2)}, max_bad_fraction=0.1,
                     min_samples_for_abort=8)
    it = iter(loader)
    with pytest.raises(DataError, match="training data: .* samples were bad"):
        for _ in range(3):
            next(it)
