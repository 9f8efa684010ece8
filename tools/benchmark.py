#!/usr/bin/env python
"""Benchmarks for cosmos building blocks.

    python tools/benchmark.py towers [--arch ViT-B-16] [--batch 128] [--image-size 224]
        [--dtype bf16] [--backends sdpa,math,xformers] [--steps 20 --warmup 5] [--compile]
        [--device auto|cuda|cpu] [--out FILE.json]

``towers`` times forward+backward of the image tower (VisionTransformer) and the text tower
(TextTransformer) separately, once per attention backend (``COSMOS_ATTN_BACKEND``), on random
images / token ids; ``--arch`` is a preset of ``cosmos/models/presets.py`` (``tiny``: tiny-16).
On CUDA the towers run under autocast to ``--dtype`` (parameters stay fp32) and are timed with
CUDA events; on CPU they run in fp32 with a wall clock (a smoke test, not a benchmark). Prints
a markdown table (ms/step, samples/s, peak CUDA memory) on stdout; backends that cannot run on
the device/dtype are listed as skipped with the reason. Exit status 1 if a run failed.

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
Logic in ``cosmos/engine/benchmark/``. Config overrides come last.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cosmos.engine.benchmark.batches import TEXT_LENGTHS  # noqa: E402
from cosmos.engine.benchmark.openclip import resolve_openclip, run_openclip  # noqa: E402
from cosmos.engine.benchmark.records import AMP_DTYPES, StepSettings  # noqa: E402
from cosmos.engine.benchmark.step import run_step_benchmark  # noqa: E402
from cosmos.engine.benchmark.tables import step_markdown, towers_markdown  # noqa: E402
from cosmos.engine.benchmark.towers import TOWER_ARCHS, TowerSettings, run_towers  # noqa: E402
from cosmos.engine.defaults import load_config, run_cli, select_device  # noqa: E402
from cosmos.layers.attention import BACKENDS, ENV_VAR  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument  # noqa: E402
from cosmos.utils.errors import CosmosError  # noqa: E402


# ----------------------------------------------------------------------------- towers
def describe(args: argparse.Namespace, setup: TowerSettings) -> str:
    if setup.device.type == "cuda":
        where = f"{torch.cuda.get_device_name(setup.device)}, autocast {args.dtype}"
    else:
        where = "cpu, fp32 (CPU smoke run; --dtype applies on CUDA)"
    extra = ", torch.compile" if setup.compile else ""
    return (f"### towers: {args.arch}, batch {setup.batch}, {where}{extra}; "
            f"{setup.steps} steps after {setup.warmup} warmup; torch {torch.__version__}")


# ----------------------------------------------------------------------------- step
def step_header(args: argparse.Namespace, settings: StepSettings) -> str:
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
    device = tool_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    openclip = resolve_openclip(args.openclip) if args.openclip else None
    settings = StepSettings(
        device=device, dtype=args.dtype, batch=args.batch, steps=args.steps, warmup=args.warmup,
        phase_steps=args.phase_steps, data=args.data, text_lengths=args.text_lengths,
        compile=args.compile, flops=args.flops, flops_batch=args.flops_batch,
        peak_tflops=args.peak_tflops)
    name = f"{type_name(cfg)} ({os.path.splitext(os.path.basename(args.config_file))[0]})"
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # as training (default_setup) sets it
    try:
        report, batch = run_step_benchmark(cfg, settings, name)
        like = {k: v for k, v in batch.items() if k in ("images", "tokens")}  # OpenCLIP reuses
        del batch
        ratios: Dict[str, float] = {}
        if openclip:
            ours = report.results[0].pairs_per_s
            label = os.path.splitext(os.path.basename(args.openclip))[0]
            for compiled in (False, True)[: 1 + args.openclip_compile]:
                result, _ = run_openclip(openclip, settings, like, compiled, label)
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
    towers.add_argument("--arch", default="ViT-B-16", choices=TOWER_ARCHS)
    towers.add_argument("--batch", type=int, default=128)
    towers.add_argument("--image-size", type=int, default=None, help="default: the arch's")
    towers.add_argument("--dtype", default="bf16", choices=sorted(AMP_DTYPES))
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
    step.add_argument("--dtype", default="bf16", choices=sorted(AMP_DTYPES),
                      help="autocast dtype on CUDA (fp16 adds a GradScaler); CPU runs fp32")
    step.add_argument("--data", default="random", choices=("random", "loader"),
                      help="random: synthetic batches shaped like the loader's; loader: "
                           "dataloader.train itself (data wait reported)")
    step.add_argument("--text-lengths", default="template", choices=TEXT_LENGTHS,
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


def tool_device(name: str) -> torch.device:
    """``--device``: auto (CUDA when available), cuda (this process's GPU), cuda:N or cpu."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CosmosError(f"--device {name} but CUDA is not available; use --device cpu")
    return select_device(name)


def make_setup(args: argparse.Namespace) -> TowerSettings:
    device = tool_device(args.device)
    dtype = AMP_DTYPES[args.dtype] if device.type == "cuda" else torch.float32
    return TowerSettings(device, dtype, args.batch, args.steps, args.warmup, args.compile)


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    args = parse_args(argv)
    if args.command == "step":
        return run_cli(step_main, args)
    return run_cli(towers_main, args)


def towers_main(args: argparse.Namespace) -> int:
    """The ``towers`` subcommand (run through ``run_cli``: user errors print one line)."""
    setup = make_setup(args)
    results = run_towers(args.arch, args.image_size, setup, args.backend_list)
    header = describe(args, setup)
    print(towers_markdown(results, header))
    if args.out:
        payload = dict(command="towers", arch=args.arch, batch=setup.batch, dtype=str(setup.dtype),
                       device=str(setup.device), compile=setup.compile, torch=torch.__version__,
                       header=header, results=[asdict(r) for r in results])
        with open(args.out, "w") as f:
            json.dump(payload, f, indent=2)
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
