#!/usr/bin/env python
"""Loader throughput of the COSMOS paper pipeline: the official transforms, today's per-sample
path and the fast path, in one run.

    python tools/benchmark_loader.py [--sizes 256,512] [--samples 96] [--batch 32]
        [--workers 0,2] [--batches 6] [--warmup 1] [--shards URLS] [--out PATH] [override ...]

1. Stages, one core (one process, one torch thread, no tar reading): JPEG bytes of synthetic
   scenes (4:3, ``--sizes`` px short side) → decode → 2 × 224 + 6 × 96 px crops with the DINO
   recipe → 8 text crops tokenised to (8, 77) → collate, ms per sample per stage (decode,
   geometry, photometric, text, collate) and samples/s per core, for
   * ``official``: the official code's transforms crop by crop (a transcription of
     ``DataAugmentationMulticrop``: torchvision RandomResizedCrop, RandomHorizontalFlip,
     RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), 0.8), RandomGrayscale(0.2), DINO's PIL
     GaussianBlur (p 1.0 / 0.1 / 0.5) and Solarization (p 0.2, global 2), ToTensor, Normalize;
     ``random_sample_from_list`` text crops, ``open_clip.tokenize``, ``default_collate``);
   * ``today``: ``image_crops.cosmos_multicrop`` as the loader ran it before the fast path
     (``torch.manual_seed`` per sample), ``text_crops.cosmos_textcrop``, ``ClipTokenizer``;
   * ``fast``: ``image_crops.cosmos_multicrop_fast`` in the worker; its photometric stage is
     ``batch_augments.dino_photometric`` run here on the CPU, per batch. Two totals: without that
     stage (it runs on the training device) and with it (all on one CPU core);
   * ``fast_device``: the same with ``resize_on_device=True`` (the worker decodes, draws and
     ships the image in its canvas; crop, resize and flip join the batch step, run here on the
     CPU with PIL crop by crop).
2. Loader (``--workers``, e.g. ``16`` as in the configs): ``configs/common/data/webdataset.py``'s
   ShardStream reading tar shards (``--shards``, else synthetic shards of the first size), pairs/s
   for today's and the fast transform; for the fast one also with the batch step on the CPU in
   the main process. ``--workers ''`` skips it.

Prints markdown tables; ``--out`` writes them as JSON.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from PIL import Image, ImageFilter, ImageOps  # noqa: E402
from torchvision import transforms as T  # noqa: E402

from cosmos.config import LazyConfig, instantiate  # noqa: E402
from cosmos.data import ClipTokenizer, collate  # noqa: E402
from cosmos.data.multicrop import MultiCrop  # noqa: E402
from cosmos.data.multicrop_fast import FastMultiCrop  # noqa: E402
from cosmos.data.photometric import DinoPhotometric  # noqa: E402
from cosmos.data.synthetic import SyntheticScenes  # noqa: E402
from cosmos.data.text_crops import TextCrop  # noqa: E402
from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD  # noqa: E402
from cosmos.engine.benchmark.shards import write_benchmark_shards  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_CONFIG = os.path.join(REPO, "configs", "common", "data", "webdataset.py")
STAGES = ("decode", "geometry", "photometric", "text", "collate")
TARGET_PAIRS_PER_S = 930  # the per-GPU step target (docs/benchmarks.md)
LABELS = {"fast": "fast (photometric on the GPU)",
          "fast_cpu": "fast, photometric on this CPU",
          "fast_device": "fast, resize_on_device (resize + photometric on the GPU)",
          "fast_device_cpu": "fast, resize_on_device, batch step on this CPU"}


class Stopwatch:
    """Seconds per stage, summed over ``with watch("stage"):`` blocks."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


# ----------------------------------------------------------------------------- inputs
def benchmark_inputs(short_side: int, count: int) -> List[Dict[str, Any]]:
    """``count`` synthetic scenes as 4:3 JPEG bytes of ``short_side`` px, with their captions."""
    scenes = SyntheticScenes(num_samples=count, image_size=short_side, split="bench")
    out = []
    for i in range(count):
        scene = scenes[i]
        image = scene["image"].resize((round(short_side * 4 / 3), short_side), Image.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        out.append({"jpeg": buf.getvalue(), "captions": dict(scene["captions"])})
    return out


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


# ----------------------------------------------------------------------------- official
class _DinoBlur:
    """DINO's ``GaussianBlur``: Python ``random`` gate and radius, PIL filter."""

    def __init__(self, p: float, radius_min: float = 0.1, radius_max: float = 2.0) -> None:
        self.prob, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() > self.prob:
            return img
        return img.filter(ImageFilter.GaussianBlur(
            radius=random.uniform(self.radius_min, self.radius_max)))


class _DinoSolarization:
    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        return ImageOps.solarize(img) if random.random() < self.p else img


class OfficialTransforms:
    """The official multi-crop and text crops, transcribed; each crop = (geometry, photometric)."""

    def __init__(self) -> None:
        bicubic = T.InterpolationMode.BICUBIC
        rgb = T.Lambda(lambda im: im.convert("RGB"))
        jitter = T.Compose([T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                            T.RandomGrayscale(p=0.2)])
        normalize = T.Compose([T.ToTensor(), T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])

        def crop(size: int, scale) -> T.Compose:
            return T.Compose([T.RandomResizedCrop(size, scale=scale, interpolation=bicubic), rgb,
                              T.RandomHorizontalFlip(p=0.5)])
        self.crops = [
            (crop(224, (0.4, 1.0)), T.Compose([jitter, _DinoBlur(1.0), normalize])),
            (crop(224, (0.4, 1.0)), T.Compose([jitter, _DinoBlur(0.1), _DinoSolarization(0.2),
                                               normalize])),
        ] + [(crop(96, (0.05, 0.4)), T.Compose([jitter, _DinoBlur(0.5), normalize]))] * 6

    @staticmethod
    def _draw(sentences: Sequence[str], n: int) -> List[str]:
        if len(sentences) >= n:
            return random.sample(list(sentences), n)
        return (list(sentences) * (n // len(sentences))
                + random.sample(list(sentences), n % len(sentences)))

    def text(self, captions: Dict[str, Any]) -> torch.Tensor:
        import open_clip
        pool = [s.strip() for key in ("raw", "short", "long")
                for item in ([captions[key]] if isinstance(captions[key], str) else captions[key])
                for s in item.replace("\n", ".").split(".") if s.strip()]
        texts = [". ".join(self._draw(pool, random.randint(1, 5))) for _ in range(2)]
        return open_clip.tokenize(texts + self._draw(pool, 6))


def run_official(inputs: List[Dict[str, Any]], start: int, n: int, batch: int,
                 watch: Stopwatch) -> None:
    from torch.utils.data import default_collate
    t = OfficialTransforms()
    random.seed(start)
    pending: List[Any] = []
    for i in range(start, start + n):
        item = inputs[i % len(inputs)]
        with watch("decode"):
            image = decode(item["jpeg"])
        views = []
        for geometry, photometric in t.crops:
            with watch("geometry"):
                view = geometry(image)
            with watch("photometric"):
                views.append(photometric(view))
        with watch("text"):
            tokens = t.text(item["captions"])
        pending.append((views, tokens))
        if len(pending) == batch:
            with watch("collate"):
                default_collate(pending)
            pending = []


# ----------------------------------------------------------------------------- today / fast
def run_today(inputs: List[Dict[str, Any]], start: int, n: int, batch: int,
              watch: Stopwatch) -> None:
    """``MultiCrop``'s per-view steps, timed one by one (the same calls, in its order)."""
    policy = MultiCrop()
    text, tokenizer = TextCrop(), ClipTokenizer()
    pending: List[Dict[str, Any]] = []
    for i in range(start, start + n):
        item = inputs[i % len(inputs)]
        rng = random.Random(i)
        with watch("geometry"):
            torch.manual_seed(rng.getrandbits(63))  # the per-sample seeding of the old loaders
        with watch("decode"):
            image = decode(item["jpeg"])
        out: Dict[str, List[torch.Tensor]] = {"global_crops": [], "local_crops": []}
        for key, views in (("global_crops", policy.global_views),
                           ("local_crops", policy.local_views)):
            for view in views:
                r = view.recipe
                with watch("geometry"):
                    img = view.flip(view.crop(image).convert("RGB"))
                with watch("photometric"):
                    if view._gate(r.jitter_p, rng):
                        img = view.jitter(img)
                    if view._gate(r.gray_p, rng):
                        img = view.gray(img)
                    if rng.random() <= r.blur_p:
                        img = img.filter(ImageFilter.GaussianBlur(
                            radius=rng.uniform(*r.blur_radius)))
                    if r.solarize_p > 0 and rng.random() < r.solarize_p:
                        img = ImageOps.solarize(img, threshold=r.solarize_threshold)
                    out[key].append(view.to_tensor(img))
        with watch("text"):
            out["tokens"] = tokenizer(text(item["captions"], rng))
        pending.append(out)
        if len(pending) == batch:
            with watch("collate"):
                collate(pending)
            pending = []


def run_fast(inputs: List[Dict[str, Any]], start: int, n: int, batch: int,
             watch: Stopwatch, resize_on_device: bool = False) -> None:
    policy, step = FastMultiCrop(resize_on_device=resize_on_device), DinoPhotometric()
    text, tokenizer = TextCrop(), ClipTokenizer()
    pending: List[Dict[str, Any]] = []
    for i in range(start, start + n):
        item = inputs[i % len(inputs)]
        rng = random.Random(i)
        with watch("decode"):
            image = decode(item["jpeg"])
        with watch("geometry"):
            out = dict(policy(image, rng))
        with watch("text"):
            out["tokens"] = tokenizer(text(item["captions"], rng))
        pending.append(out)
        if len(pending) == batch:
            with watch("collate"):
                collated = collate(pending)
            with watch("photometric"):
                step(collated, "cpu")
            pending = []


def run_fast_device(inputs: List[Dict[str, Any]], start: int, n: int, batch: int,
                    watch: Stopwatch) -> None:
    """The fast path with ``resize_on_device=True``: the worker decodes and draws; crop, resize
    and flip join the batch step (here on the CPU, PIL crop by crop)."""
    run_fast(inputs, start, n, batch, watch, resize_on_device=True)


def check_transcriptions(inputs: List[Dict[str, Any]]) -> None:
    """The timed copies compute what the library computes (first sample, same seed)."""
    image = decode(inputs[0]["jpeg"])
    rng = random.Random(0)
    torch.manual_seed(rng.getrandbits(63))
    expected = MultiCrop()(image, rng)
    for on_device in (False, True):
        sample = FastMultiCrop(resize_on_device=on_device)(image, random.Random(0))
        fast = DinoPhotometric()(collate([sample]), "cpu")
        for key in ("global_crops", "local_crops"):
            for a, b in zip(expected[key], fast[key]):
                if not torch.allclose(a, b[0], atol=1e-5):
                    raise SystemExit(f"fast path (resize_on_device={on_device}) differs from "
                                     f"cosmos_multicrop on {key}: "
                                     f"max {float((a - b[0]).abs().max()):.4f}")


def stage_rows(sizes: Sequence[int], samples: int, batch: int) -> List[Dict[str, Any]]:
    rows = []
    for size in sizes:
        inputs = benchmark_inputs(size, min(samples, 32))
        check_transcriptions(inputs)
        runners = {"official": run_official, "today": run_today, "fast": run_fast,
                   "fast_device": run_fast_device}
        watches = {name: Stopwatch() for name in runners}
        for name, run in runners.items():  # warm-up: caches, first-call costs
            run(inputs, 0, min(batch, samples), batch, Stopwatch())
        # batch by batch in turn, so that a change of load on a shared machine hits all three
        done = 0
        while done < samples:
            n = min(batch, samples - done)
            for name, run in runners.items():
                run(inputs, done, n, n, watches[name])
            done += n
        for name in runners:
            watch = watches[name]
            ms = {s: 1e3 * watch.seconds.get(s, 0.0) / samples for s in STAGES}
            total = sum(ms.values())
            row = {"size": size, "pipeline": name, "ms": ms, "ms_per_sample": total,
                   "per_core": 1e3 / total}
            if name.startswith("fast"):
                worker = total - ms["photometric"]
                row.update(ms_per_sample=worker, per_core=1e3 / worker,
                           ms_per_sample_with_cpu_step=total, per_core_with_cpu_step=1e3 / total)
            rows.append(row)
        base = {r["pipeline"]: r["per_core"] for r in rows if r["size"] == size}
        for r in rows:
            if r["size"] == size:
                r["vs_today"] = r["per_core"] / base["today"]
                r["vs_official"] = r["per_core"] / base["official"]
                if "per_core_with_cpu_step" in r:
                    r["vs_today_with_cpu_step"] = r["per_core_with_cpu_step"] / base["today"]
    return rows


# ----------------------------------------------------------------------------- loader
def measure_loader(urls: str, workers: int, pipeline: str, args: argparse.Namespace
                   ) -> Dict[str, Any]:
    cfg = LazyConfig.load(DATA_CONFIG)
    overrides = [f"dataloader.train.urls={urls}", f"dataloader.train.batch_size={args.batch}",
                 f"dataloader.train.num_workers={workers}", "dataloader.train.seed=0"]
    if pipeline == "today":
        overrides += ["dataloader.train.image_transform._target_=image_crops.cosmos_multicrop"]
    if pipeline == "fast_device":
        overrides += ["dataloader.train.image_transform.resize_on_device=True"]
    if pipeline == "today":  # the per-sample policy takes neither
        for key in ("resize_on_device", "canvas"):
            cfg.dataloader.train.image_transform.pop(key, None)
    LazyConfig.apply_overrides(cfg, overrides + [
        o if o.startswith("dataloader.") else f"dataloader.train.{o}" for o in args.overrides])
    step: Optional[Callable] = (instantiate(cfg.dataloader.augment) if pipeline != "today"
                                else None)
    it = iter(instantiate(cfg.dataloader.train))
    # untimed: warm-up batches, then the batches the workers prefetched meanwhile (2 each)
    for _ in range(args.warmup * max(workers, 1) + 2 * workers):
        next(it)
    step_seconds, start = 0.0, time.perf_counter()
    for _ in range(args.batches):
        batch = next(it)
        if step is not None:
            t0 = time.perf_counter()
            batch = step(batch, "cpu")
            step_seconds += time.perf_counter() - t0
    seconds = time.perf_counter() - start
    assert len(batch["global_crops"]) == 2 and batch["tokens"].shape[1] == 8
    pairs = args.batches * args.batch
    row = {"pipeline": pipeline, "workers": workers,
           "pairs_per_s": pairs / (seconds - step_seconds),
           "pairs_per_s_per_worker": pairs / (seconds - step_seconds) / max(workers, 1)}
    if step is not None:
        row["pairs_per_s_with_cpu_step"] = pairs / seconds
    return row


# ----------------------------------------------------------------------------- report
def print_report(stages: List[Dict[str, Any]], loader: List[Dict[str, Any]],
                 args: argparse.Namespace) -> None:
    print(f"Loader, COSMOS views (2x224 + 6x96 px, 8 text crops), batch {args.batch}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, one torch thread\n")
    if stages:
        print(f"Stages, one core, {args.samples} samples of 4:3 JPEG scenes "
              "(ms per sample; fast: photometric = the batch step on this CPU)\n")
        print("| short side | pipeline | " + " | ".join(STAGES) + " | ms/sample | samples/s "
              "per core | vs today | vs official | cores per GPU for 930 pairs/s |")
        print("|---|---|" + "---:|" * (len(STAGES) + 5))
        for r in stages:
            cells = " | ".join(f"{r['ms'][s]:.2f}" for s in STAGES)
            label = LABELS.get(r["pipeline"], r["pipeline"])
            print(f"| {r['size']} | {label} | {cells} | {r['ms_per_sample']:.2f} | "
                  f"{r['per_core']:.1f} | {r['vs_today']:.2f}x | {r['vs_official']:.2f}x | "
                  f"{TARGET_PAIRS_PER_S / r['per_core']:.1f} |")
            if "per_core_with_cpu_step" in r:
                print(f"| {r['size']} | {LABELS[r['pipeline'] + '_cpu']} | {cells} | "
                      f"{r['ms_per_sample_with_cpu_step']:.2f} | "
                      f"{r['per_core_with_cpu_step']:.1f} | {r['vs_today_with_cpu_step']:.2f}x | "
                      f" | {TARGET_PAIRS_PER_S / r['per_core_with_cpu_step']:.1f} |")
    if loader:
        print(f"\nLoader (ShardStream, {args.source}), {args.batches} batches after warm-up\n")
        print("| pipeline | workers | pairs/s | pairs/s per worker | pairs/s incl. batch step "
              "on the CPU |\n|---|---:|---:|---:|---:|")
        for r in loader:
            label = "0 (in process)" if r["workers"] == 0 else str(r["workers"])
            with_step = r.get("pairs_per_s_with_cpu_step")
            print(f"| {r['pipeline']} | {label} | {r['pairs_per_s']:.1f} | "
                  f"{r['pairs_per_s_per_worker']:.1f} | "
                  f"{'' if with_step is None else f'{with_step:.1f}'} |")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--sizes", default="256,512", help="short sides of the JPEGs (stage table)")
    p.add_argument("--samples", type=int, default=96, help="timed samples per pipeline and size")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", default="0", help="comma-separated worker counts for the "
                   "loader table ('' skips it)")
    p.add_argument("--batches", type=int, default=6, help="timed batches per loader setting")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches per worker")
    p.add_argument("--shards", default=None, help="shard URLs (default: temporary synthetic "
                   "shards at the first of --sizes)")
    add_out_argument(p, "also write the results as JSON to this file", default=None,
                     metavar="FILE.json", old=("--json",))
    p.add_argument("overrides", nargs="*", help="dataloader.train.* overrides (loader table)")
    args = p.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
        args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        p.error(f"--sizes and --workers take comma-separated integers, got {args.sizes!r}, "
                f"{args.workers!r}")
    if args.samples < 1 or args.batch < 1 or args.batches < 1:
        p.error("--samples, --batch and --batches must be >= 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    stages = stage_rows(args.size_list, args.samples, args.batch) if args.size_list else []
    loader: List[Dict[str, Any]] = []
    args.source = args.shards or f"synthetic {(args.size_list or [256])[0]} px JPEG shards"
    if args.worker_list:
        with tempfile.TemporaryDirectory() as tmp:
            urls = args.shards or write_benchmark_shards(tmp, (args.size_list or [256])[0],
                                                         num_samples=256, samples_per_shard=32)
            loader = [measure_loader(urls, w, pipeline, args)
                      for pipeline in ("today", "fast", "fast_device") for w in args.worker_list]
    print_report(stages, loader, args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"batch": args.batch, "source": args.source, "stages": stages,
                       "loader": loader}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
