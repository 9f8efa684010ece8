"""Synthetic JPEG shards for the loader benchmarks (``tools/benchmark_loader.py``,
``tools/benchmark_streams.py``)."""
from __future__ import annotations

import os

from cosmos.data.shard_writer import synthetic_samples, write_shards
from cosmos.data.synthetic import SyntheticScenes


def write_benchmark_shards(directory: str, image_size: int, num_samples: int,
                           samples_per_shard: int) -> str:
    """Write ``num_samples`` synthetic scenes of ``image_size`` px as JPEG shards
    ``bench-{000000..N}.tar`` (captions pre-split) into ``directory``; returns their brace URL."""
    dataset = SyntheticScenes(num_samples=num_samples, image_size=image_size, split="bench")
    index = write_shards(synthetic_samples(dataset, presplit=True, image_format="jpg"), directory,
                         prefix="bench", samples_per_shard=samples_per_shard)
    last = len(index["shards"]) - 1
    return os.path.join(directory, f"bench-{{000000..{last:06d}}}.tar")
