#!/usr/bin/env python
"""Loader throughput: pairs/s, and pairs/s per worker, of the shard stream with COSMOS views.

    python tools/benchmark_loader.py [--shards URLS] [--workers 0,1,2] [--batch 32]
        [--batches 20] [--warmup 2] [--image-size 256] [--out FILE.json] [override ...]

Reads ``configs/common/data/webdataset.py`` (the paper pipeline: decode, 2 global 224 px + 6 local
96 px crops with the DINO jitter/blur/solarize recipe, 8 text crops, tokenization to (8, 77),
collation), with ``dataloader.train.*`` overrides applied. Without ``--shards`` it first writes
512 synthetic scenes at ``--image-size`` px as JPEG shards into a temporary directory (real
img2dataset shards are typically 256–512 px JPEGs). ``--workers 0`` is the in-process loader.
Prints a markdown table; the time counts batches after the first ``warmup`` per worker.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cosmos.config import LazyConfig, instantiate  # noqa: E402
from cosmos.data.shard_writer import synthetic_samples, write_shards  # noqa: E402
from cosmos.data.synthetic import SyntheticScenes  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument, comma_list  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_CONFIG = os.path.join(REPO, "configs", "common", "data", "webdataset.py")


def write_benchmark_shards(directory: str, image_size: int, num_samples: int = 512) -> str:
    dataset = SyntheticScenes(num_samples=num_samples, image_size=image_size, split="bench")
    write_shards(synthetic_samples(dataset, presplit=True, image_format="jpg"), directory,
                 prefix="bench", samples_per_shard=64)
    return os.path.join(directory, f"bench-{{000000..{num_samples // 64 - 1:06d}}}.tar")


def measure(urls: str, workers: int, args: argparse.Namespace) -> Dict[str, float]:
    cfg = LazyConfig.load(DATA_CONFIG)
    LazyConfig.apply_overrides(cfg, [
        f"dataloader.train.urls={urls}", f"dataloader.train.batch_size={args.batch}",
        f"dataloader.train.num_workers={workers}", "dataloader.train.seed=0",
        *[o if o.startswith("dataloader.") else f"dataloader.train.{o}" for o in args.overrides]])
    stream = instantiate(cfg.dataloader.train)
    it = iter(stream)
    for _ in range(args.warmup * max(workers, 1)):
        next(it)
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(it)
    seconds = time.perf_counter() - start
    pairs = args.batches * args.batch
    assert len(batch["global_crops"]) == 2 and batch["tokens"].shape[1] == 8
    return {"workers": workers, "pairs_per_s": pairs / seconds,
            "pairs_per_s_per_worker": pairs / seconds / max(workers, 1),
            "ms_per_batch": 1000 * seconds / args.batches}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--shards", default=None, help="shard URLs (default: temporary synthetic shards)")
    p.add_argument("--workers", type=comma_list, default="0,1,2", metavar="N,N,...",
                   help="worker counts, comma-separated")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per worker")
    p.add_argument("--image-size", type=int, default=256, help="size of the synthetic images")
    add_out_argument(p, "also write the results as JSON to this file", default=None,
                     metavar="FILE.json", old=("--json",))
    p.add_argument("overrides", nargs="*", help="dataloader.train.* overrides")
    args = p.parse_args(argv)
    try:
        args.worker_list = [int(w) for w in args.workers]
    except ValueError:
        p.error(f"--workers takes comma-separated integers, got {','.join(args.workers)}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.shards or write_benchmark_shards(tmp, args.image_size)
        rows = [measure(urls, w, args) for w in args.worker_list]
    source = args.shards or f"synthetic {args.image_size} px JPEG shards"
    print(f"Loader, COSMOS views (2x224 + 6x96 px, 8 text crops), batch {args.batch}, {source}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}\n")
    print("| workers | pairs/s | pairs/s per worker | ms/batch |\n|---|---|---|---|")
    for r in rows:
        label = "0 (in process)" if r["workers"] == 0 else str(r["workers"])
        print(f"| {label} | {r['pairs_per_s']:.1f} | {r['pairs_per_s_per_worker']:.1f} | "
              f"{r['ms_per_batch']:.0f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"source": source, "batch": args.batch, "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
