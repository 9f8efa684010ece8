#!/usr/bin/env python
"""Benchmarks for cosmos building blocks.

    python tools/benchmark.py towers [--arch ViT-B-16] [--batch 128] [--image-size 224]
        [--dtype bf16] [--backends sdpa,math,xformers] [--steps 20 --warmup 5] [--compile]
        [--device auto|cuda|cpu] [--json PATH]

``towers`` times forward+backward of the image tower (VisionTransformer) and the text tower
(TextTransformer) separately, once per attention backend (``COSMOS_ATTN_BACKEND``), on random
images / token ids. On CUDA the towers run under autocast to ``--dtype`` (parameters stay fp32) and
are timed with CUDA events; on CPU they run in fp32 with a wall clock (a smoke test, not a
benchmark). Prints a markdown table (ms/step, samples/s, peak CUDA memory) on stdout; backends that
cannot run on the device/dtype are listed as skipped with the reason. Exit status 1 if a run failed.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cosmos.layers.attention import BACKENDS, ENV_VAR, unavailable_reason  # noqa: E402
from cosmos.models import TextTransformer, VisionTransformer  # noqa: E402

logger = logging.getLogger("cosmos.benchmark")

_B16_TEXT = dict(context_length=77, vocab_size=49408, width=512, layers=12, heads=8, output_dim=512)
# Tower shapes (OpenCLIP's); local until cosmos.models grows presets.
ARCHS: Dict[str, Dict[str, dict]] = {
    "tiny": dict(
        vision=dict(image_size=32, patch_size=16, width=32, layers=1, heads=2, output_dim=16),
        text=dict(context_length=16, vocab_size=100, width=32, layers=1, heads=2, output_dim=16)),
    "ViT-B-16": dict(
        vision=dict(image_size=224, patch_size=16, width=768, layers=12, heads=12, output_dim=512),
        text=_B16_TEXT),
    "ViT-B-32": dict(
        vision=dict(image_size=224, patch_size=32, width=768, layers=12, heads=12, output_dim=512),
        text=_B16_TEXT),
    "ViT-L-14": dict(
        vision=dict(image_size=224, patch_size=14, width=1024, layers=24, heads=16, output_dim=768),
        text=dict(context_length=77, vocab_size=49408, width=768, layers=12, heads=12,
                  output_dim=768)),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Result:
    """One (tower, backend) measurement; status is ok | skipped | oom | error."""

    tower: str
    backend: str
    status: str
    ms_per_step: Optional[float] = None
    samples_per_s: Optional[float] = None
    peak_mem_mib: Optional[float] = None
    reason: str = ""


@dataclass
class Setup:
    device: torch.device
    dtype: torch.dtype  # the dtype attention sees (autocast dtype on CUDA, fp32 on CPU)
    batch: int
    steps: int
    warmup: int
    compile: bool


# ----------------------------------------------------------------------------- building
def build_tower(arch: str, tower: str, image_size: Optional[int]) -> torch.nn.Module:
    """VisionTransformer or TextTransformer with the shape of ``arch``."""
    shape = dict(ARCHS[arch][tower])
    if tower == "vision":
        if image_size is not None:
            shape["image_size"] = image_size
        return VisionTransformer(**shape)
    return TextTransformer(**shape)


def make_inputs(model: torch.nn.Module, tower: str, batch: int,
                device: torch.device) -> torch.Tensor:
    """Random images (B, 3, S, S) or token ids (B, context) with EOT (the largest id) last."""
    if tower == "vision":
        return torch.randn(batch, 3, model.image_size, model.image_size, device=device)
    tokens = torch.randint(0, model.vocab_size - 1, (batch, model.context_length), device=device)
    tokens[:, -1] = model.vocab_size - 1
    return tokens


def _autocast(setup: Setup):
    if setup.device.type == "cuda" and setup.dtype != torch.float32:
        return torch.autocast("cuda", dtype=setup.dtype)
    return contextlib.nullcontext()


def make_step(model: torch.nn.Module, inputs: torch.Tensor, setup: Setup) -> Callable[[], None]:
    """One forward + backward on ``inputs``."""
    forward = torch.compile(model) if setup.compile else model

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with _autocast(setup):
            pooled, _ = forward(inputs)
            loss = pooled.float().square().mean()
        loss.backward()

    return step


# ----------------------------------------------------------------------------- timing
def time_steps(step: Callable[[], None], setup: Setup) -> float:
    """Mean milliseconds per step after ``warmup`` untimed steps."""
    for _ in range(setup.warmup):
        step()
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(setup.steps):
            step()
        end.record()
        torch.cuda.synchronize(setup.device)
        return start.elapsed_time(end) / setup.steps
    begin = time.perf_counter()
    for _ in range(setup.steps):
        step()
    return (time.perf_counter() - begin) * 1e3 / setup.steps


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_one(model: torch.nn.Module, tower: str, backend: str, setup: Setup) -> Result:
    """Time ``model`` with attention forced to ``backend``."""
    reason = unavailable_reason(backend, setup.device, setup.dtype)
    if reason is not None:
        return Result(tower, backend, "skipped", reason=reason)
    os.environ[ENV_VAR] = backend
    if setup.compile:
        torch._dynamo.reset()
    _release(setup.device)
    try:
        inputs = make_inputs(model, tower, setup.batch, setup.device)
        ms = time_steps(make_step(model, inputs, setup), setup)
    except torch.cuda.OutOfMemoryError:
        return Result(tower, backend, "oom", reason="CUDA out of memory")
    except Exception as exc:  # noqa: BLE001 - report and go on with the other backends
        logger.exception("%s / %s failed", tower, backend)
        first = (str(exc).splitlines() or [""])[0]
        return Result(tower, backend, "error", reason=f"{type(exc).__name__}: {first}")
    finally:
        model.zero_grad(set_to_none=True)
    peak = None
    if setup.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(setup.device) / 2**20
    return Result(tower, backend, "ok", ms, setup.batch * 1e3 / ms, peak)


def run_towers(args: argparse.Namespace, setup: Setup, backends: List[str]) -> List[Result]:
    results = []
    for tower in ("vision", "text"):
        torch.manual_seed(0)
        model = build_tower(args.arch, tower, args.image_size).to(setup.device)
        for backend in backends:
            results.append(run_one(model, tower, backend, setup))
            logger.info("%s / %s: %s", tower, backend, results[-1].status)
        del model
        _release(setup.device)
    return results


# ----------------------------------------------------------------------------- reporting
def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: List[Result], header: str) -> str:
    """The results as a markdown table plus one line per skipped backend."""
    lines = [header, "", "| tower | backend | ms/step | samples/s | peak mem (MiB) |",
             "|---|---|---:|---:|---:|"]
    for r in results:
        if r.status == "ok":
            lines.append(f"| {r.tower} | {r.backend} | {_fmt(r.ms_per_step, 2)} "
                         f"| {_fmt(r.samples_per_s)} | {_fmt(r.peak_mem_mib, 0)} |")
        elif r.status != "skipped":
            lines.append(f"| {r.tower} | {r.backend} | {r.status}: {r.reason} | - | - |")
    skipped: Dict[str, str] = {}
    for r in results:
        if r.status == "skipped":
            skipped.setdefault(r.backend, r.reason)
    if skipped:
        lines.append("")
        lines.extend(f"- skipped {name}: {reason}" for name, reason in skipped.items())
    return "\n".join(lines)


def describe(args: argparse.Namespace, setup: Setup) -> str:
    if setup.device.type == "cuda":
        where = f"{torch.cuda.get_device_name(setup.device)}, autocast {args.dtype}"
    else:
        where = "cpu, fp32 (CPU smoke run; --dtype applies on CUDA)"
    extra = ", torch.compile" if setup.compile else ""
    return (f"### towers: {args.arch}, batch {setup.batch}, {where}{extra}; "
            f"{setup.steps} steps after {setup.warmup} warmup; torch {torch.__version__}")


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    towers = sub.add_parser("towers", help="forward+backward of each tower, per attention backend")
    towers.add_argument("--arch", default="ViT-B-16", choices=sorted(ARCHS))
    towers.add_argument("--batch", type=int, default=128)
    towers.add_argument("--image-size", type=int, default=None, help="default: the arch's")
    towers.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    towers.add_argument("--backends", default="xformers,sdpa,math",
                        help=f"comma-separated subset of {','.join(BACKENDS)}")
    towers.add_argument("--steps", type=int, default=20)
    towers.add_argument("--warmup", type=int, default=5)
    towers.add_argument("--compile", action="store_true", help="torch.compile each tower")
    towers.add_argument("--device", default="auto",
                        help="auto (cuda if available), cuda, cuda:N or cpu")
    towers.add_argument("--json", default=None, metavar="PATH",
                        help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backend_list) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("need --steps >= 1, --warmup >= 0 and --batch >= 1")
    return args


def make_setup(args: argparse.Namespace) -> Setup:
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = DTYPES[args.dtype] if device.type == "cuda" else torch.float32
    return Setup(device, dtype, args.batch, args.steps, args.warmup, args.compile)


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    args = parse_args(argv)
    setup = make_setup(args)
    previous = os.environ.get(ENV_VAR)
    try:
        results = run_towers(args, setup, args.backend_list)
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous
    header = describe(args, setup)
    print(markdown(results, header))
    if args.json:
        payload = dict(command="towers", arch=args.arch, batch=setup.batch, dtype=str(setup.dtype),
                       device=str(setup.device), compile=setup.compile, torch=torch.__version__,
                       header=header, results=[asdict(r) for r in results])
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
