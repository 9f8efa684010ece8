#!/usr/bin/env python
"""Loader throughput on streams: local files vs HTTP over loopback vs ``pipe:cat``, on one core.

    python tools/benchmark_streams.py [--image-size 256] [--samples 512] [--batch 32]
        [--batches 8] [--repeat 3] [--json PATH]

Writes ``--samples`` synthetic scenes as JPEG shards (64 per shard) into a temporary directory,
serves it with ``python -m http.server`` on 127.0.0.1 in another process, and measures in this
process (no loader workers, ``OMP_NUM_THREADS=1`` advised), for each source kind:

* ``read + decode``: every sample of every shard read and its image decoded (samples/s);
* ``COSMOS pipeline``: batches of the paper pipeline (``configs/common/data/webdataset.py``:
  2 x 224 + 6 x 96 px crops, 8 text crops) from ``ShardStream`` (pairs/s).

All sources use the same in-shard shuffle buffer, so they read the same samples. The sources
take turns ``--repeat`` times; the best of each is reported, with the ratio to local files.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.config import LazyConfig, instantiate  # noqa: E402
from cosmos.data.shards import STREAM_SHUFFLE, decode_sample, expand_urls  # noqa: E402
from cosmos.data.shards import _Spec  # noqa: E402
from cosmos.engine.benchmark.shards import write_benchmark_shards  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_CONFIG = os.path.join(REPO, "configs", "common", "data", "webdataset.py")
PER_SHARD = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(directory: str) -> (subprocess.Popen, str):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", directory],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def read_and_decode(urls: str) -> float:
    """samples/s reading every sample of every shard once and decoding its image."""
    shards = [u for source in expand_urls(urls) for u in source]
    spec = _Spec([shards], None, False, 1, 0, 1, 1, None, None, None, None, 1,
                 shard_shuffle=STREAM_SHUFFLE)
    start, count = time.perf_counter(), 0
    for draw, url in enumerate(shards):
        shard = spec.open(0, url, draw)
        while not shard.done:
            key, files = shard.next()
            decode_sample(key, files)
            count += 1
        shard.close()
    return count / (time.perf_counter() - start)


def pipeline(urls: str, batch: int, batches: int) -> float:
    """pairs/s of the COSMOS paper pipeline, in process, after two warm-up batches."""
    cfg = LazyConfig.load(DATA_CONFIG)
    LazyConfig.apply_overrides(cfg, [
        f"dataloader.train.urls={urls}", f"dataloader.train.batch_size={batch}",
        "dataloader.train.num_workers=0", "dataloader.train.seed=0",
        f"+dataloader.train.shard_shuffle={STREAM_SHUFFLE}"])
    it = iter(instantiate(cfg.dataloader.train))
    for _ in range(2):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        names = os.path.basename(write_benchmark_shards(directory, args.image_size, args.samples,
                                                        PER_SHARD))
        server, base = _serve(directory)
        try:
            sources = {"local files": f"{directory}/{names}", "HTTP (loopback)": f"{base}/{names}",
                       "pipe:cat": f"pipe:cat {directory}/{names}"}
            rows: Dict[str, Dict[str, float]] = {
                name: {"read_decode_per_s": 0.0, "pipeline_pairs_per_s": 0.0} for name in sources}
            for _ in range(args.repeat):  # sources take turns, so that load changes hit all
                for name, urls in sources.items():
                    row = rows[name]
                    row["read_decode_per_s"] = max(row["read_decode_per_s"], read_and_decode(urls))
                    row["pipeline_pairs_per_s"] = max(row["pipeline_pairs_per_s"],
                                                      pipeline(urls, args.batch, args.batches))
        finally:
            server.terminate()
            server.wait()
    local = rows["local files"]
    print(f"{args.samples} scenes of {args.image_size} px as JPEG, {PER_SHARD} per shard; "
          f"one process, no workers; best of {args.repeat}")
    print("| source | read + decode (samples/s) | vs local | COSMOS pipeline (pairs/s) "
          "| vs local |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['read_decode_per_s']:.0f} | "
              f"{r['read_decode_per_s'] / local['read_decode_per_s']:.2f} | "
              f"{r['pipeline_pairs_per_s']:.1f} | "
              f"{r['pipeline_pairs_per_s'] / local['pipeline_pairs_per_s']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
