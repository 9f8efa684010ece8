"""Forward + backward of the image tower and of the text tower alone, once per attention backend
(``COSMOS_ATTN_BACKEND``): the logic behind ``tools/benchmark.py towers``.

Tower shapes are the presets of :mod:`cosmos.models.presets` (``tiny`` names ``tiny-16``). On
CUDA a tower runs under autocast to the settings' dtype (parameters stay fp32) and is timed with
CUDA events; on the CPU it runs in fp32 with a wall clock (a smoke test, not a benchmark).
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import nn

from cosmos.engine.benchmark.clock import Clock, release, time_calls
from cosmos.engine.benchmark.records import first_line
from cosmos.layers.attention import ENV_VAR, unavailable_reason
from cosmos.models.presets import PRESETS, build_tower

logger = logging.getLogger("cosmos.benchmark")

ARCH_ALIASES = {"tiny": "tiny-16"}
TOWER_ARCHS = sorted([*PRESETS, *ARCH_ALIASES])


@dataclass
class TowerResult:
    """One (tower, backend) measurement; status is ok | skipped | oom | error."""

    tower: str
    backend: str
    status: str
    ms_per_step: Optional[float] = None
    samples_per_s: Optional[float] = None
    peak_mem_mib: Optional[float] = None
    reason: str = ""


@dataclass
class TowerSettings:
    device: torch.device
    dtype: torch.dtype  # the dtype attention sees (autocast dtype on CUDA, fp32 on CPU)
    batch: int
    steps: int
    warmup: int
    compile: bool


def preset_tower(arch: str, tower: str, image_size: Optional[int] = None) -> nn.Module:
    """The ``tower`` ("vision" | "text") of preset ``arch``, at ``image_size`` when given."""
    fields = {"image_size": image_size} if tower == "vision" and image_size is not None else {}
    return build_tower(ARCH_ALIASES.get(arch, arch), tower, **fields)


def make_inputs(model: nn.Module, tower: str, batch: int, device: torch.device) -> torch.Tensor:
    """Random images (B, 3, S, S) or token ids (B, context) with EOT (the largest id) last."""
    if tower == "vision":
        return torch.randn(batch, 3, model.image_size, model.image_size, device=device)
    tokens = torch.randint(0, model.vocab_size - 1, (batch, model.context_length), device=device)
    tokens[:, -1] = model.vocab_size - 1
    return tokens


def _autocast(settings: TowerSettings):
    if settings.device.type == "cuda" and settings.dtype != torch.float32:
        return torch.autocast("cuda", dtype=settings.dtype)
    return contextlib.nullcontext()


def make_step(model: nn.Module, inputs: torch.Tensor,
              settings: TowerSettings) -> Callable[[], None]:
    """One forward + backward on ``inputs`` (loss: the mean square of the pooled output)."""
    forward = torch.compile(model) if settings.compile else model

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with _autocast(settings):
            pooled, _ = forward(inputs)
            loss = pooled.float().square().mean()
        loss.backward()

    return step


def run_one(model: nn.Module, tower: str, backend: str, settings: TowerSettings) -> TowerResult:
    """Time ``model`` with attention forced to ``backend`` (sets ``COSMOS_ATTN_BACKEND``)."""
    reason = unavailable_reason(backend, settings.device, settings.dtype)
    if reason is not None:
        return TowerResult(tower, backend, "skipped", reason=reason)
    os.environ[ENV_VAR] = backend
    if settings.compile:
        torch._dynamo.reset()
    release(settings.device)
    try:
        inputs = make_inputs(model, tower, settings.batch, settings.device)
        times = time_calls(make_step(model, inputs, settings), Clock(settings.device),
                           settings.steps, settings.warmup)
    except torch.cuda.OutOfMemoryError:
        return TowerResult(tower, backend, "oom", reason="CUDA out of memory")
    except Exception as exc:  # noqa: BLE001 - report and go on with the other backends
        logger.exception("%s / %s failed", tower, backend)
        return TowerResult(tower, backend, "error", reason=first_line(exc))
    finally:
        model.zero_grad(set_to_none=True)
    ms = sum(times) / len(times)
    peak = None
    if settings.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(settings.device) / 2**20
    return TowerResult(tower, backend, "ok", ms, settings.batch * 1e3 / ms, peak)


def run_towers(arch: str, image_size: Optional[int], settings: TowerSettings,
               backends: List[str]) -> List[TowerResult]:
    """Every backend on the vision tower, then on the text tower (each built once, seed 0).
    ``COSMOS_ATTN_BACKEND`` is restored afterwards."""
    previous = os.environ.get(ENV_VAR)
    results = []
    try:
        for tower in ("vision", "text"):
            torch.manual_seed(0)
            model = preset_tower(arch, tower, image_size).to(settings.device)
            for backend in backends:
                results.append(run_one(model, tower, backend, settings))
                logger.info("%s / %s: %s", tower, backend, results[-1].status)
            del model
            release(settings.device)
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous
    return results
