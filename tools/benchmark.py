#!/usr/bin/env python
"""Benchmarks for cosmos building blocks.

    python tools/benchmark.py towers [--arch ViT-B-16] [--batch 128] [--image-size 224]
        [--dtype bf16] [--backends sdpa,math,xformers] [--steps 20 --warmup 5] [--compile]
        [--device auto|cuda|cpu] [--out FILE.json]

``towers`` times forward+backward of the image tower (VisionTransformer) and the text tower
(TextTransformer) separately, once per attention backend (``COSMOS_ATTN_BACKEND``), on random
images / token ids. On CUDA the towers run under autocast to ``--dtype`` (parameters stay fp32) and
are timed with CUDA events; on CPU they run in fp32 with a wall clock (a smoke test, not a
benchmark). Prints a markdown table (ms/step, samples/s, peak CUDA memory) on stdout; backends that
cannot run on the device/dtype are listed as skipped with the reason. Exit status 1 if a run failed.

    python tools/benchmark.py step --config-file CFG [--batch 128] [--steps 20 --warmup 5]
        [--phase-steps 3] [--dtype bf16|fp16|fp32] [--data random|loader]
        [--text-lengths template|full] [--compile] [--flops [--flops-batch 8] [--peak-tflops 989]]
        [--openclip ARCH [--openclip-compile]] [--device auto|cuda|cpu] [--out FILE.json]
        [key=value ...]

``step`` times the config's complete training step (forward, loss, backward, optimizer step, EMA
update) in a real Trainer with the config's optimizer and step hooks, on random batches of the
structure the config's loader produces (``--data random``) or on the loader itself (``--data
loader``, data wait reported). Prints pairs/s (batch × world / mean step time), mean and median
ms/step, peak CUDA memory, training GFLOP per pair and model-FLOPs utilisation (``--flops``, fvcore;
2 FLOPs per multiply-add; MFU on CUDA only), the step split into phases (measured in separate
instrumented steps after the timed ones), and with ``--openclip`` the same step of OpenCLIP's model
in the same process (eager, and compiled with ``--openclip-compile``) with the ratio of pairs/s.
Logic in ``cosmos/engine/benchmark.py``. Config overrides come last.
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

from cosmos.engine import benchmark as B  # noqa: E402
from cosmos.engine.defaults import load_config, run_cli, select_device  # noqa: E402
from cosmos.layers.attention import BACKENDS, ENV_VAR, unavailable_reason  # noqa: E402
from cosmos.models import TextTransformer, VisionTransformer  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument  # noqa: E402
from cosmos.utils.errors import CosmosError  # noqa: E402

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


# ----------------------------------------------------------------------------- step
def _gib(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _gflop(value: Optional[float]) -> str:
    return "-" if value is None else (f"{value:,.1f}" if value >= 10 else f"{value:.3g}")


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def step_markdown(report: B.StepReport, header: str, ratios: Dict[str, float]) -> str:
    """Results, ratios, phase and FLOP tables as markdown."""
    lines = [header, "", "| setting | pairs/s | ms/step (mean) | ms/step (median) | peak GiB "
             "| GFLOP/pair | MFU |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report.results:
        if r.status == "ok":
            lines.append(f"| {r.setting} | {_fmt(r.pairs_per_s)} | {_fmt(r.ms_mean, 2)} "
                         f"| {_fmt(r.ms_median, 2)} | {_gib(r.peak_gib)} "
                         f"| {_gflop(r.gflop_per_pair)} | {_pct(r.mfu)} |")
        else:
            lines.append(f"| {r.setting} | {r.status}: {r.reason} | - | - | {_gib(r.peak_gib)} "
                         "| - | - |")
    for r in report.results:
        if r.data_wait_ms is not None:
            lines.append(f"\n- data wait ({r.setting}): {r.data_wait_ms:.2f} ms/step")
    if ratios:
        lines.append("")
        lines.extend(f"- pairs/s ratio, ours / {name}: {ratio:.2f}x"
                     for name, ratio in ratios.items())
    phases = report.phases
    if phases is not None:
        lines += ["", f"#### phases: mean of {phases.steps} instrumented step(s), "
                      f"{phases.step_ms:.2f} ms/step with the timers", "",
                  "| phase | ms | share |", "|---|---:|---:|"]
        for name, ms in phases.ms.items():
            label = "other (data, schedule, NaN guard, clamp, timers)" if name == B.OTHER else name
            lines.append(f"| {label} | {ms:.2f} | {100 * ms / phases.step_ms:.1f}% |")
    flops = report.flops
    if flops is not None:
        lines += ["", f"#### forward FLOPs by module (fvcore, traced batch {flops.batch}; "
                      "2 FLOPs per multiply-add)", "",
                  "| module | forward GFLOP/pair | in the training step |", "|---|---:|---|"]
        for name, value in flops.forward.items():
            times = "1x (frozen: forward only)" if flops.multiplier[name] == 1 else "3x"
            lines.append(f"| {name} | {_gflop(value / flops.batch / 1e9)} | {times} |")
        lines.append(f"| **training step** | **{_gflop(flops.train_per_pair / 1e9)}** "
                     f"(forward {_gflop(flops.forward_per_pair / 1e9)}) | |")
        if flops.uncounted_ops:
            lines.append(f"\n- uncounted ops (no FLOP handler): {', '.join(flops.uncounted_ops)}")
    if report.flops_error:
        lines.append(f"\n- FLOP count failed: {report.flops_error}")
    return "\n".join(lines)


def step_header(args: argparse.Namespace, settings: B.StepSettings) -> str:
    device = settings.device
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, autocast {settings.amp}"
    else:
        where = "cpu, fp32 (CPU smoke run; --dtype applies on CUDA)"
    data = (f"random data ({settings.text_lengths} caption lengths)" if settings.data == "random"
            else "the config's loader")
    extra = ", towers compiled" if settings.compile else ""
    backend = os.environ.get(ENV_VAR, "auto")
    return (f"### step: {args.config_file}, batch {settings.batch}, {where}{extra}, {data}; "
            f"{settings.steps} steps after {settings.warmup} warmup; attention {backend}; "
            f"torch {torch.__version__}")


def step_main(args: argparse.Namespace) -> int:
    """The ``step`` subcommand (run through ``run_cli``: user errors print one line)."""
    cfg = load_config(args.config_file, args.opts)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CosmosError(f"--device {args.device} but CUDA is not available; use --device cpu")
    device = select_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    openclip = B.resolve_openclip(args.openclip) if args.openclip else None
    settings = B.StepSettings(
        device=device, dtype=args.dtype, batch=args.batch, steps=args.steps, warmup=args.warmup,
        phase_steps=args.phase_steps, data=args.data, text_lengths=args.text_lengths,
        compile=args.compile, flops=args.flops, flops_batch=args.flops_batch,
        peak_tflops=args.peak_tflops)
    name = f"{type_name(cfg)} ({os.path.splitext(os.path.basename(args.config_file))[0]})"
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # as training (default_setup) sets it
    try:
        report, batch = B.run_step_benchmark(cfg, settings, name)
        like = {k: v for k, v in batch.items() if k in ("images", "tokens")}  # OpenCLIP reuses
        del batch
        ratios: Dict[str, float] = {}
        if openclip:
            ours = report.results[0].pairs_per_s
            label = os.path.splitext(os.path.basename(args.openclip))[0]
            for compiled in (False, True)[: 1 + args.openclip_compile]:
                result, _ = B.run_openclip(openclip, settings, like, compiled, label)
                report.results.append(result)
                if ours and result.pairs_per_s:
                    ratios[result.setting] = ours / result.pairs_per_s
    finally:
        torch.set_float32_matmul_precision(precision)
    header = step_header(args, settings)
    print(step_markdown(report, header, ratios))
    if args.out:
        payload = dict(command="step", config=args.config_file, overrides=list(args.opts),
                       batch=settings.batch, world_size=1, dtype=settings.amp,
                       device=str(device), steps=settings.steps, warmup=settings.warmup,
                       phase_steps=settings.phase_steps, data=settings.data,
                       text_lengths=settings.text_lengths, compile=settings.compile,
                       peak_tflops=settings.peak_tflops, torch=torch.__version__,
                       attention_backend=os.environ.get(ENV_VAR, "auto"), header=header,
                       ratios=ratios, **report.as_dict())
        with open(args.out, "w") as f:
            json.dump(payload, f, indent=2)
    return 1 if any(r.status == "error" for r in report.results) else 0


def type_name(cfg) -> str:
    """The meta-architecture's class name from the config (``model._target_``)."""
    target = cfg.model.get("_target_", "model")
    return getattr(target, "__name__", str(target).rsplit(".", 1)[-1])


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1])
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
    add_out_argument(towers, "also write the results as JSON to this file", default=None,
                     metavar="FILE.json", old=("--json",))
    add_step_parser(sub)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("need --steps >= 1, --warmup >= 0 and --batch >= 1")
    if args.command == "step":
        if args.phase_steps < 0 or (args.flops_batch is not None and args.flops_batch < 1):
            parser.error("need --phase-steps >= 0 and --flops-batch >= 1")
        if args.openclip_compile and not args.openclip:
            parser.error("--openclip-compile needs --openclip ARCH")
        return args
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backend_list) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    return args


def add_step_parser(sub) -> None:
    step = sub.add_parser("step", help="the config's complete training step: throughput, phases, "
                                       "FLOPs, OpenCLIP comparison")
    step.add_argument("--config-file", required=True, metavar="FILE",
                      help="LazyConfig .py or .yaml")
    step.add_argument("--batch", type=int, default=128, help="pairs per step (per process)")
    step.add_argument("--steps", type=int, default=20, help="timed steps")
    step.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    step.add_argument("--phase-steps", type=int, default=3,
                      help="instrumented steps after the timed ones (per-phase times; 0: none)")
    step.add_argument("--dtype", default="bf16", choices=sorted(DTYPES),
                      help="autocast dtype on CUDA (fp16 adds a GradScaler); CPU runs fp32")
    step.add_argument("--data", default="random", choices=("random", "loader"),
                      help="random: synthetic batches shaped like the loader's; loader: "
                           "dataloader.train itself (data wait reported)")
    step.add_argument("--text-lengths", default="template", choices=B.TEXT_LENGTHS,
                      help="random data: caption lengths of the config's text transform on "
                           "synthetic captions (template), every caption the full context (full) "
                           "or drawn like recaptioned long captions' sentences (recaptioned)")
    step.add_argument("--compile", action="store_true",
                      help="torch.compile each tower (student and teacher)")
    step.add_argument("--flops", action="store_true",
                      help="count model FLOPs with fvcore (GFLOP/pair, MFU on CUDA)")
    step.add_argument("--flops-batch", type=int, default=None, metavar="N",
                      help="pairs traced for --flops (default min(batch, 8))")
    step.add_argument("--peak-tflops", type=float, default=989.0,
                      help="device peak for MFU (default 989: H100 dense bf16)")
    step.add_argument("--openclip", default=None, metavar="ARCH",
                      help="also time OpenCLIP's CLIP step for ARCH (a model name or a "
                           "model-config .json), random init")
    step.add_argument("--openclip-compile", action="store_true",
                      help="also time OpenCLIP's step under torch.compile")
    step.add_argument("--device", default="auto",
                      help="auto (cuda if available), cuda, cuda:N or cpu")
    add_out_argument(step, "also write the results as JSON to this file", default=None,
                     metavar="FILE.json", old=("--json",))
    step.add_argument("opts", nargs=argparse.REMAINDER,
                      help="config overrides key=value (+key=value adds a new key), last")


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
    if args.command == "step":
        return run_cli(step_main, args)
    return towers_main(args)


def towers_main(args: argparse.Namespace) -> int:
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
    if args.out:
        payload = dict(command="towers", arch=args.arch, batch=setup.batch, dtype=str(setup.dtype),
                       device=str(setup.device), compile=setup.compile, torch=torch.__version__,
                       header=header, results=[asdict(r) for r in results])
        with open(args.out, "w") as f:
            json.dump(payload, f, indent=2)
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
