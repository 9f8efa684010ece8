"""A deterministic, resumable stream of training batches from a map-style dataset.

Batch ``s`` on rank ``r`` holds the samples at stream positions ``(s·W + r)·B … +B-1``; a
position maps to a dataset index through a per-epoch permutation seeded by ``(seed, epoch)``,
and each sample's augmentation RNG is seeded by ``(seed, position)``. So batch ``s`` is the same
whatever the number of workers, and resuming at step ``s`` needs only the number ``s``.

A sample whose dataset item raises :class:`~cosmos.utils.errors.BadSampleError` (e.g. a corrupt
image in a CSV dataset) is replaced by the next dataset index and counted; the counts are
``metrics()`` (``data/*``) and stop the run past ``max_bad_fraction``.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cosmos.data import stats as data_stats
from cosmos.utils.distributed import get_rank, get_world_size
from cosmos.utils.errors import BadSampleError, DataError


def seed_torch(image_transform: Any, rng: random.Random) -> None:
    """Seed torch's CPU generator for a sample's torchvision draws from ``rng``.

    Only the CPU generator (``torch.manual_seed`` also seeds every accelerator's generators,
    ~0.5 ms per call on CUDA builds); nothing when the transform seeds its own generator
    (``draws_torch_seed``), which then draws the same number from ``rng`` itself.
    """
    if not getattr(image_transform, "draws_torch_seed", False):
        torch.default_generator.manual_seed(rng.getrandbits(63))


def collate(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack per-sample dicts: tensors → (B, ...); lists of tensors → list of (B, ...);
    other → list."""
    out: Dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (list, tuple)) and not values[0]:
            out[key] = []  # e.g. no local crops
        elif isinstance(values[0], (list, tuple)) and isinstance(values[0][0], torch.Tensor):
            out[key] = [torch.stack(group) for group in zip(*values)]
        else:
            out[key] = values
    out["batch_size"] = len(samples)
    return out


class _PairBatches(Dataset):
    """Map-style dataset over batch indices; item ``s`` is the whole batch ``s``."""

    def __init__(self, dataset, image_transform: Callable, text_transform: Callable,
                 tokenizer: Callable, batch_size: int, seed: int, rank: int,
                 world_size: int) -> None:
        self.dataset = dataset
        self.image_transform, self.text_transform = image_transform, text_transform
        self.tokenizer, self.batch_size, self.seed = tokenizer, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:  # the stream is endless; the sampler decides what is read
        return 2 ** 62

    def dataset_index(self, position: int) -> int:
        n = len(self.dataset)
        epoch = position // n
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._perm_epoch = epoch
        return int(self._perm[position % n])

    def read(self, position: int, counters: Dict[str, object]) -> Dict[str, Any]:
        """The dataset item at ``position``, or the first good one after it (bad ones counted)."""
        index, n = self.dataset_index(position), len(self.dataset)
        for attempt in range(min(n, 100)):
            try:
                return self.dataset[(index + attempt) % n]
            except BadSampleError as e:
                data_stats.count_bad(counters, e.reason, str(e))
        raise BadSampleError("no_good_sample", f"100 bad items in a row from index {index}")

    def make_sample(self, position: int, counters: Dict[str, object]) -> Dict[str, Any]:
        sample = self.read(position, counters)
        counters["samples"] = int(counters["samples"]) + 1
        rng = random.Random((self.seed << 48) ^ position)
        seed_torch(self.image_transform, rng)  # torchvision draws crop geometry from torch
        out = dict(self.image_transform(sample["image"], rng))
        out["tokens"] = self.tokenizer(self.text_transform(sample["captions"], rng))
        out["key"] = sample.get("key", str(position))
        return out

    def __getitem__(self, step: int) -> Dict[str, Any]:
        first = (step * self.world_size + self.rank) * self.batch_size
        counters = data_stats.new_counters()
        batch = collate([self.make_sample(first + j, counters) for j in range(self.batch_size)])
        batch["_counters"] = counters
        return batch


class _CountFrom(Sampler):
    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while True:
            yield step
            step += 1


class ResumableLoader:
    """Endless iterator of batches; ``state_dict()`` is the number of batches handed out."""

    def __init__(self, dataset, image_transform: Callable, text_transform: Callable,
                 tokenizer: Callable, batch_size: int, num_workers: int = 0, seed: int = 0,
                 pin_memory: bool = False, max_bad_fraction: float = 0.05,
                 min_samples_for_abort: int = 1000) -> None:
        self.batches = _PairBatches(dataset, image_transform, text_transform, tokenizer, batch_size,
                                    seed, get_rank(), get_world_size())
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.max_bad_fraction, self.min_samples_for_abort = max_bad_fraction, min_samples_for_abort
        self.position = 0
        self.counters = data_stats.new_counters()

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        loader = DataLoader(self.batches, batch_size=None, sampler=_CountFrom(self.position),
                            num_workers=self.num_workers, pin_memory=self.pin_memory,
                            persistent_workers=False)
        for batch in loader:
            self.counters = data_stats.merge([self.counters, batch.pop("_counters")])
            self.position += 1
            data_stats.check_bad_fraction(self.counters, self.max_bad_fraction,
                                          self.min_samples_for_abort, "training data")
            yield batch

    def metrics(self) -> Dict[str, float]:
        return data_stats.as_metrics(self.counters)

    def state_dict(self) -> Dict[str, Any]:
        return {"position": self.position, "counters": dict(self.counters)}

    def load_state_dict(self, state: Optional[Dict[str, Any]]) -> None:
        self.position = int(state["position"]) if state else 0
        self.counters = data_stats.new_counters()
        if state and "streams" in state:
            raise DataError("the checkpoint's data state is from a shard stream, not this loader")
        if state and state.get("counters"):
            self.counters = data_stats.merge([state["counters"]])
