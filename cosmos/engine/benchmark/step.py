"""Benchmark of the complete training step, the logic behind ``tools/benchmark.py step``.

The step is the real one: the config's meta-architecture, optimizer and per-step hooks (lr/wd
schedule, NaN guard, EMA teacher update, logit-scale clamp; :func:`build_step_hooks`) inside a
:class:`~cosmos.engine.trainer.Trainer`, fed either random batches of the exact structure the
config's loader produces (:mod:`cosmos.engine.benchmark.batches`) or the loader itself.

One ``Trainer.train()`` call runs ``warmup`` untimed steps, ``steps`` throughput steps (one
timestamp per step boundary, nothing else added) and ``phase_steps`` instrumented steps in which
forward hooks on the meta-architecture, its teacher and its loss modules and markers around the
trainer's hooks split the step into phases (:mod:`cosmos.engine.benchmark.step_timer`).
Timestamps are CUDA events on a GPU (the GPU timeline, no synchronisation added) and
``perf_counter`` on the CPU.

FLOPs of the step: :func:`cosmos.engine.benchmark.flops.count_flops`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from cosmos.config import instantiate
from cosmos.engine.benchmark.batches import (
    RepeatedBatch, TimedLoader, random_batch, slice_batch, template_batch)
from cosmos.engine.benchmark.clock import Clock, release
from cosmos.engine.benchmark.flops import count_flops
from cosmos.engine.benchmark.records import (
    StepReport, StepResult, StepSettings, first_line, mfu, summarize)
from cosmos.engine.benchmark.step_timer import StepTimer
from cosmos.engine.defaults import build_batch_augment, build_optimizer, build_step_hooks
from cosmos.engine.hook_base import HookBase
from cosmos.engine.trainer import Trainer, move_to_device
from cosmos.utils.errors import CosmosError

logger = logging.getLogger("cosmos.benchmark")


def tower_classes() -> Tuple[type, ...]:
    """Classes registered as backbones (the image and text towers)."""
    from cosmos.registry import BACKBONES, load_builtins

    load_builtins()
    return tuple(obj for _, obj in BACKBONES.items() if isinstance(obj, type))


class CompiledTowers:
    """Replaces every tower (a registered backbone, student and teacher) by ``torch.compile`` of
    it, in place; :meth:`restore` puts the eager modules back. Parameters are the same objects, so
    the optimizer and the EMA pairs are unaffected."""

    def __init__(self, model: nn.Module) -> None:
        classes = tower_classes()
        self.swaps: List[Tuple[nn.Module, str, nn.Module]] = []

        def visit(module: nn.Module) -> None:
            for name, child in module.named_children():
                if isinstance(child, classes):
                    self.swaps.append((module, name, child))  # not looking inside a tower
                else:
                    visit(child)

        visit(model)
        for parent, name, child in self.swaps:
            setattr(parent, name, torch.compile(child, dynamic=False))
        self.names = [f"{type(c).__name__}" for _, _, c in self.swaps]

    def restore(self) -> None:
        for parent, name, child in self.swaps:
            setattr(parent, name, child)


def build_step_trainer(cfg: Any, model: nn.Module, data_loader: Iterable, device: torch.device,
                       dtype: str, extra_hooks: Callable[[List[HookBase]], List[HookBase]]
                       ) -> Trainer:
    """A trainer with the config's optimizer and step hooks (as ``build_trainer``, without
    checkpointing, evaluation, metric writers and ``train.hooks``); ``extra_hooks`` rewrites the
    hook list (the benchmark's timers). ``dtype``: bf16 | fp16 | fp32 autocast (CUDA only)."""
    optimizer = build_optimizer(cfg, model)
    amp = None if dtype == "fp32" else dtype
    trainer = Trainer(model, data_loader, optimizer, 0, device, amp_dtype=amp,
                      grad_clip=cfg.train.get("grad_clip"), batch_augment=build_batch_augment(cfg))
    trainer.register_hooks(extra_hooks([h for h in build_step_hooks(cfg, model) if h is not None]))
    return trainer


def run_step_benchmark(cfg: Any, settings: StepSettings, name: str
                       ) -> Tuple[StepReport, Dict[str, Any]]:
    """Time the config's training step; returns the report and the (device) batch it used, for
    OpenCLIP to reuse. The model is freed before returning."""
    device, s = settings.device, settings
    clock = Clock(device)
    torch.manual_seed(int(cfg.train.get("seed", 0)))
    if s.data == "random":
        template = template_batch(cfg, num_samples=min(s.batch, 8))
        batch = random_batch(template, s.batch, device, s.text_lengths)
        loader: Optional[TimedLoader] = None
        data_loader: Iterable = RepeatedBatch(batch)
    else:
        cfg.dataloader.train.batch_size = s.batch
        loader = TimedLoader(instantiate(cfg.dataloader.train))
        data_loader, batch = loader, None
    model = instantiate(cfg.model).to(device)
    compiled = CompiledTowers(model) if s.compile else None
    timer = StepTimer(model, clock, s.warmup, s.steps, loader)
    trainer = build_step_trainer(cfg, model, data_loader, device, s.amp, timer.wrap_hooks)
    trainer.max_iter = s.warmup + s.steps + s.phase_steps
    setting = name + (", towers compiled" if s.compile else "")
    report = StepReport([], compiled=compiled.names if compiled else [])
    release(device)
    try:
        trainer.train()
        clock.sync()
        result = summarize(setting, timer.step_times(), s.batch, timer.peak_bytes)
        report.phases = timer.phases()
    except torch.cuda.OutOfMemoryError:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        result = StepResult(setting, "oom", peak_gib=peak, reason=f"CUDA out of memory "
                            f"(peak {peak:.1f} GiB allocated)")
    except CosmosError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        logger.exception("training step failed")
        result = StepResult(setting, "error", reason=first_line(exc))
    finally:
        timer.detach()
        if compiled is not None:
            compiled.restore()
    if timer.data_waits:
        result.data_wait_ms = 1e3 * sum(timer.data_waits) / len(timer.data_waits)
    if batch is None and loader is not None and loader.first is not None:
        batch = loader.first
    augment = build_batch_augment(cfg)
    if augment is not None and batch is not None:  # the model's input: augmented crops
        batch = augment(batch, device)
    if batch is not None:
        batch = move_to_device(batch, device)
    trainer.optimizer.zero_grad(set_to_none=True)
    del trainer
    release(device)
    if s.flops and batch is not None:
        try:
            report.flops = count_flops(model, slice_batch(batch, min(s.flops_batch or 8, s.batch)))
        except CosmosError:
            raise
        except Exception as exc:  # noqa: BLE001 - the timings stand without the count
            logger.exception("FLOP count failed")
            report.flops_error = first_line(exc)
        else:
            result.gflop_per_pair = report.flops.train_per_pair / 1e9
            result.mfu = mfu(result.gflop_per_pair, result.pairs_per_s, s)
    report.results.append(result)
    del model
    release(device)
    return report, batch or {}
