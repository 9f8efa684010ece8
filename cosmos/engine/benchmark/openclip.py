"""OpenCLIP's CLIP training step, timed in the same process as the reference for ours."""
from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from cosmos.engine.benchmark.clock import Clock, release, time_calls
from cosmos.engine.benchmark.flops import forward_flops
from cosmos.engine.benchmark.records import (
    AMP_DTYPES, StepResult, StepSettings, first_line, mfu, summarize)
from cosmos.utils.errors import CosmosError

logger = logging.getLogger("cosmos.benchmark")


def resolve_openclip(arch: str) -> str:
    """An OpenCLIP model name, registering ``arch`` first when it is a model-config ``.json``."""
    try:
        import open_clip
    except ImportError:
        raise CosmosError("--openclip needs open_clip (pip install open_clip_torch)") from None
    if arch.endswith(".json"):
        if not os.path.isfile(arch):
            raise CosmosError(f"--openclip {arch}: no such model config file")
        open_clip.add_model_config(arch)
        arch = os.path.splitext(os.path.basename(arch))[0]
    if arch not in open_clip.list_models():
        raise CosmosError(f"--openclip {arch}: not an OpenCLIP model (see open_clip.list_models())")
    return arch


def _openclip_inputs(model: nn.Module, like: Dict[str, Any], batch: int,
                     device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images and tokens for OpenCLIP: ``like``'s when their shapes fit, else random ones
    (every caption full length, EOT — the largest id — last)."""
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    images = like.get("images")
    if not (isinstance(images, torch.Tensor) and tuple(images.shape[-2:]) == size):
        images = torch.randn(batch, 3, *size, device=device)
    tokens = like.get("tokens")
    context, vocab = int(model.context_length), int(model.vocab_size)
    if not (isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and tokens.shape[1] == context
            and int(tokens.max()) < vocab):
        tokens = torch.randint(1, vocab - 2, (batch, context), device=device)
        tokens[:, 0], tokens[:, -1] = vocab - 2, vocab - 1
    return images.to(device), tokens.to(device)


def run_openclip(arch: str, settings: StepSettings, like: Dict[str, Any], compile: bool,
                 label: Optional[str] = None) -> Tuple[StepResult, Optional[float]]:
    """Time OpenCLIP's CLIP training step (forward, ``ClipLoss``, backward, AdamW with OpenCLIP's
    no-decay groups, logit-scale clamp) on ``arch`` (random init) at the same batch and dtype;
    with ``compile`` the model is ``torch.compile``d as OpenCLIP's ``--torchcompile`` does.
    Returns the result and, with ``settings.flops``, its training GFLOP per pair."""
    import open_clip

    device, s = settings.device, settings
    setting = f"OpenCLIP {label or arch}" + (", torch.compile" if compile else " (eager)")
    release(device)
    torch._dynamo.reset()
    model = None
    try:
        model = open_clip.create_model(arch, pretrained=None, device=device, output_dict=True)
        model.train()
        images, tokens = _openclip_inputs(model, like, s.batch, device)
        gflop = None
        if s.flops:
            n = min(s.flops_batch or 8, s.batch)
            flops, _ = forward_flops(_OpenClipForward(model), (images[:n], tokens[:n]))
            gflop = 3 * flops[""] / n / 1e9
        no_decay = [p for n, p in model.named_parameters()
                    if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
        decay = [p for n, p in model.named_parameters() if all(p is not q for q in no_decay)]
        optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                                       {"params": decay, "weight_decay": 0.2}],
                                      lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
        loss_fn = open_clip.ClipLoss()
        amp_dtype = AMP_DTYPES[s.amp]
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype != torch.float32
                    else contextlib.nullcontext())
        forward = torch.compile(model) if compile else model
        max_log = math.log(100.0)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                out = forward(images, tokens)
                loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_log)

        release(device)
        times = time_calls(step, Clock(device), s.steps, s.warmup)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        result = summarize(setting, times, s.batch, peak)
        result.gflop_per_pair = gflop
        result.mfu = mfu(gflop, result.pairs_per_s, s)
    except torch.cuda.OutOfMemoryError:
        result, gflop = StepResult(setting, "oom", reason="CUDA out of memory"), None
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        logger.exception("OpenCLIP step failed")
        result, gflop = StepResult(setting, "error", reason=first_line(exc)), None
    model = None  # the step's closure holds the name: drop the model before release()
    release(device)
    return result, gflop


class _OpenClipForward(nn.Module):
    """OpenCLIP's forward as a tuple of tensors (for tracing)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model(images, tokens)
        return out["image_features"], out["text_features"]
