"""Benchmark of the complete training step, the logic behind ``tools/benchmark.py step``.

The step is the real one: the config's meta-architecture, optimizer and per-step hooks (lr/wd
schedule, NaN guard, EMA teacher update, logit-scale clamp; :func:`build_step_hooks`) inside a
:class:`~cosmos.engine.trainer.Trainer`, fed either random batches of the exact structure the
config's loader produces (:func:`template_batch`, :func:`random_batch`) or the loader itself.

One ``Trainer.train()`` call runs ``warmup`` untimed steps, ``steps`` throughput steps (one
timestamp per step boundary, nothing else added) and ``phase_steps`` instrumented steps in which
forward hooks on the meta-architecture, its teacher and its loss modules and markers around the
trainer's hooks split the step into phases (:class:`StepTimer`). Timestamps are CUDA events on a
GPU (the GPU timeline, no synchronisation added) and ``perf_counter`` on the CPU.

FLOPs (:func:`count_flops`) come from an fvcore trace of one forward and count **2 FLOPs per
multiply-add** of matrix products, convolutions and attention (q·kᵀ and attention·v over the full
Lq × Lk, masked or causal or not); elementwise work (norms, activations, softmax) is not counted.
A training step is counted as 3 × forward for modules that train and 1 × forward for modules with
frozen parameters (the EMA teacher: no backward).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import random
import re
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn

from cosmos.config import instantiate
from cosmos.engine.defaults import build_batch_augment, build_optimizer, build_step_hooks
from cosmos.engine.hook_base import HookBase
from cosmos.engine.trainer import Trainer, move_to_device
from cosmos.utils.distributed import get_world_size
from cosmos.utils.errors import CosmosError

logger = logging.getLogger("cosmos.benchmark")

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TEXT_LENGTHS = ("template", "full", "recaptioned")
# "recaptioned" caption lengths: BPE tokens per sentence of an LLM long caption ~ 6 + Poisson(16)
# (mean 22, about 18 words), a global caption 1-5 sentences joined by ". " (one "." token per
# join), a local caption one sentence, + SOT and EOT, cut at the context length.
SENTENCE_TOKENS = (6, 16.0)
MAX_GLOBAL_SENTENCES = 5
NUM_GLOBAL_CAPTIONS = 2
FLOP_CONVENTION = ("2 FLOPs per multiply-add of matmuls, convolutions and attention "
                   "(full Lq x Lk); norms, activations and softmax not counted; "
                   "training = 3 x forward, frozen modules (EMA teacher) 1 x forward")

# phase names, in table order
STUDENT, TEACHER, LOSS, BACKWARD, OPTIMIZER, EMA, OTHER = (
    "student forward", "teacher forward", "loss", "backward", "optimizer", "EMA", "other")


# ----------------------------------------------------------------------------- results
@dataclass
class StepResult:
    """One timed training step setting; status is ok | oom | error | skipped."""

    setting: str
    status: str
    pairs_per_s: Optional[float] = None
    ms_mean: Optional[float] = None
    ms_median: Optional[float] = None
    peak_gib: Optional[float] = None
    gflop_per_pair: Optional[float] = None
    mfu: Optional[float] = None
    data_wait_ms: Optional[float] = None
    reason: str = ""


@dataclass
class PhaseReport:
    """Mean milliseconds per phase over the instrumented steps; ``step_ms`` is their mean length.

    Phases: student forward (the meta-architecture's forward minus teacher and loss modules),
    teacher forward, loss (the loss modules), backward (end of forward → after backward),
    optimizer (after the after-backward hooks → the after-step hooks: grad clip, optimizer step,
    scaler, loss logging), EMA (the EMA hook), other (the rest: data, schedule, NaN guard,
    logit-scale clamp).
    """

    steps: int
    step_ms: float
    ms: Dict[str, float] = field(default_factory=dict)


@dataclass
class FlopReport:
    """Forward FLOPs of one traced batch of ``batch`` pairs, by top-level module."""

    batch: int
    forward: Dict[str, float]   # module → forward FLOPs of the traced batch; "(meta-arch)": glue
    multiplier: Dict[str, int]      # module → 3 (trained) or 1 (frozen: forward only)
    uncounted_ops: List[str] = field(default_factory=list)

    @property
    def forward_per_pair(self) -> float:
        return sum(self.forward.values()) / self.batch

    @property
    def train_per_pair(self) -> float:
        """Training FLOPs per pair: Σ multiplier × forward / batch."""
        return sum(self.multiplier[k] * v for k, v in self.forward.items()) / self.batch

    def as_dict(self) -> Dict[str, Any]:
        return dict(batch=self.batch, convention=FLOP_CONVENTION,
                    forward_gflop_per_pair={k: v / self.batch / 1e9
                                            for k, v in self.forward.items()},
                    multiplier=dict(self.multiplier),
                    forward_gflop_per_pair_total=self.forward_per_pair / 1e9,
                    train_gflop_per_pair=self.train_per_pair / 1e9,
                    uncounted_ops=list(self.uncounted_ops))


# ----------------------------------------------------------------------------- clocks
class Clock:
    """Timestamps on the device's timeline: CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def ms(self, start: Any, end: Any) -> float:
        """Milliseconds from ``start`` to ``end`` (call :meth:`sync` first on a GPU)."""
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def time_calls(step: Callable[[], None], clock: Clock, steps: int, warmup: int) -> List[float]:
    """Milliseconds of each of ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    marks = [clock.mark()]
    for _ in range(steps):
        step()
        marks.append(clock.mark())
    clock.sync()
    return [clock.ms(a, b) for a, b in zip(marks, marks[1:])]


# ----------------------------------------------------------------------------- data
def template_batch(cfg: Any, num_samples: int = 8, seed: int = 0) -> Dict[str, Any]:
    """One collated batch of ``num_samples`` made by the config's training transforms
    (``dataloader.train.image_transform``, ``text_transform``, ``tokenizer``) from synthetic
    scenes: the structure, shapes and dtypes of the config's real batches, no data files read.
    The global torch RNG is left as it was."""
    from cosmos.data import collate
    from cosmos.data.loader import seed_torch
    from cosmos.data.synthetic import SyntheticScenes

    node = cfg.get("dataloader", {}).get("train")
    keys = ("image_transform", "text_transform", "tokenizer")
    if node is None or any(k not in node for k in keys):
        raise CosmosError("--data random needs dataloader.train with image_transform, "
                          "text_transform and tokenizer; use --data loader for this config")
    image_t, text_t, tokenizer = (instantiate(node[k]) for k in keys)
    scenes = SyntheticScenes(num_samples=num_samples, image_size=64, split="train", seed=seed)
    samples = []
    with torch.random.fork_rng(devices=[]):
        for i in range(num_samples):
            scene = scenes[i]
            rng = random.Random(seed * 1_000_003 + i)
            seed_torch(image_t, rng)
            captions = dict(scene["captions"])
            captions.setdefault("caption", " ".join(captions.get("long") or []))
            try:
                out = dict(image_t(scene["image"], rng))
                out["tokens"] = tokenizer(text_t(captions, rng))
            except (ValueError, KeyError, TypeError) as exc:
                raise CosmosError(f"--data random: the config's transforms failed on a "
                                  f"synthetic scene ({type(exc).__name__}: {exc}); "
                                  "use --data loader") from None
            out["key"] = scene["key"]
            samples.append(out)
    return collate(samples)


def _token_rows(template: torch.Tensor, batch: int, text_lengths: str,
                generator: torch.Generator) -> torch.Tensor:
    """Random token ids (batch, ...) with the padding structure of ``template`` (n, ..., L).

    Row i copies the SOT (position 0), EOT (argmax) and zero padding of template row i mod n;
    the ids in between are random in [1, EOT id − 2] (below SOT and EOT, so EOT stays the
    argmax). ``text_lengths="full"``: every caption ends with EOT at the last position;
    ``"recaptioned"``: lengths drawn as recaptioned long captions' sentences (``SENTENCE_TOKENS``;
    of (batch, n, L) tokens the first ``NUM_GLOBAL_CAPTIONS`` per sample are global captions of
    1–5 sentences, the others one sentence; (batch, L) tokens are one global caption each).
    """
    n, length = template.shape[0], template.shape[-1]
    rows = template[torch.arange(batch) % n]
    eot_id = int(template.max())
    if eot_id < 4:
        raise CosmosError(f"--data random: token ids of the template batch end at {eot_id}: "
                          "not a tokenized caption")
    positions = torch.arange(length)
    eot_pos = rows.argmax(dim=-1, keepdim=True)
    if text_lengths == "full":
        eot_pos = torch.full_like(eot_pos, length - 1)
    elif text_lengths == "recaptioned":
        eot_pos = _recaptioned_eot(rows.shape[:-1], length, generator).unsqueeze(-1)
    ids = torch.randint(1, eot_id - 1, rows.shape, generator=generator, dtype=rows.dtype)
    out = torch.where(positions == 0, rows[..., :1], ids)
    out = torch.where(positions == eot_pos, torch.full_like(out, eot_id), out)
    return torch.where(positions > eot_pos, torch.zeros_like(out), out)


def _recaptioned_eot(shape: Tuple[int, ...], length: int, generator: torch.Generator
                     ) -> torch.Tensor:
    """EOT positions (shape) of captions drawn as in ``SENTENCE_TOKENS`` (see TEXT_LENGTHS)."""
    base, rate = SENTENCE_TOKENS
    sentences = torch.ones(shape, dtype=torch.long)
    if len(shape) > 1:
        glob = sentences[..., :NUM_GLOBAL_CAPTIONS]
    else:
        glob = sentences
    glob.copy_(torch.randint(1, MAX_GLOBAL_SENTENCES + 1, glob.shape, generator=generator))
    most = int(sentences.max())
    per_sentence = base + torch.poisson(torch.full((*shape, most), rate), generator=generator)
    used = torch.arange(most) < sentences.unsqueeze(-1)
    tokens = (per_sentence * used).sum(-1).long() + (sentences - 1)  # + one "." per join
    return (tokens + 1).clamp(max=length - 1)  # SOT at 0, EOT right after the last token


def random_batch(template: Dict[str, Any], batch: int, device: torch.device,
                 text_lengths: str = "template", seed: int = 0) -> Dict[str, Any]:
    """A batch of ``batch`` pairs with the keys, shapes and dtypes of ``template`` (n pairs):
    float tensors → N(0, 1) (normalised pixels), ``*token*`` integer tensors → random ids keeping
    the padding structure (:func:`_token_rows`), other tensors (uint8 crops of the fast
    multi-crop) and per-sample lists → repeated; ``*_photometric`` parameters and ``*_boxes``
    (crop boxes of ``resize_on_device``) → repeated, on the host (the batch augmentation reads
    them there)."""
    if text_lengths not in TEXT_LENGTHS:
        raise CosmosError(f"text_lengths must be one of {', '.join(TEXT_LENGTHS)}, "
                          f"got {text_lengths!r}")
    n = int(template.get("batch_size") or next(v.shape[0] for v in template.values()
                                                 if isinstance(v, torch.Tensor)))
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(batch) % n

    def like(key: str, value: torch.Tensor) -> torch.Tensor:
        if key.endswith(("_photometric", "_boxes")):  # augmentation parameters, on the host
            return value[index]
        if value.is_floating_point():
            out = torch.randn((batch, *value.shape[1:]), generator=g).to(value.dtype)
        elif "token" in key and value.dtype in (torch.int32, torch.int64):
            out = _token_rows(value, batch, text_lengths, g)
        else:
            out = value[index]
        return out.to(device)

    out: Dict[str, Any] = {}
    for key, value in template.items():
        if isinstance(value, torch.Tensor):
            out[key] = like(key, value)
        elif _tensor_list(value):
            out[key] = [like(key, v) for v in value]
        elif key == "batch_size":
            out[key] = batch
        elif isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in index.tolist()]
        else:
            out[key] = value
    return out


def _tensor_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, torch.Tensor) for v in value))


def slice_batch(batch: Dict[str, Any], n: int) -> Dict[str, Any]:
    """The first ``n`` pairs of a collated batch."""
    size = int(batch.get("batch_size") or 0)
    out: Dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[:n]
        elif _tensor_list(value):
            out[key] = [v[:n] for v in value]
        elif key == "batch_size":
            out[key] = min(n, size)
        elif isinstance(value, list) and len(value) == size:
            out[key] = value[:n]
        else:
            out[key] = value
    return out


class RepeatedBatch:
    """An endless loader that yields the same (device-resident) batch."""

    def __init__(self, batch: Dict[str, Any]) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        while True:
            yield self.batch


class TimedLoader:
    """Wraps a loader; ``waits`` holds the seconds each ``next()`` blocked, ``first`` the first
    batch handed out."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self.waits: List[float] = []
        self.first: Optional[Dict[str, Any]] = None

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        it = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - start)
            if self.first is None:
                self.first = batch
            yield batch

    def metrics(self) -> Dict[str, float]:
        inner = getattr(self.loader, "metrics", None)
        return inner() if callable(inner) else {}


# ----------------------------------------------------------------------------- model and trainer
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
    trainer.register_hooks(extra_hooks([h for h in build_step_hooks(cfg) if h is not None]))
    return trainer


# ----------------------------------------------------------------------------- step timer
class _Marker(HookBase):
    """Reports the trainer's hook calls to a :class:`StepTimer` under ``label``."""

    def __init__(self, timer: "StepTimer", label: str) -> None:
        self.timer, self.label = timer, label

    def before_step(self) -> None:
        self.timer.on(self.label, "before_step", self.trainer.iter)

    def after_backward(self) -> None:
        self.timer.on(self.label, "after_backward", self.trainer.iter)

    def after_step(self) -> None:
        self.timer.on(self.label, "after_step", self.trainer.iter)


def _region_role(name: str) -> Optional[str]:
    """The phase of a top-level child of the meta-architecture: teacher, loss or None (student)."""
    if name.startswith("teacher"):
        return TEACHER
    if "loss" in name.lower():
        return LOSS
    return None


class StepTimer:
    """Step-boundary timestamps for throughput, then per-phase timings in instrumented steps.

    Steps ``[0, warmup)`` are untimed, ``[warmup, warmup + steps)`` get one timestamp at each
    boundary (throughput), the following ones are instrumented: module hooks on the meta-arch
    (forward), on every module of its teacher and loss children (not inside compiled modules)
    and markers before, around the EMA hook and after the trainer's hooks.
    """

    def __init__(self, model: nn.Module, clock: Clock, warmup: int, steps: int,
                 loader: Optional[TimedLoader] = None) -> None:
        self.model, self.clock, self.loader = model, clock, loader
        self.warmup, self.steps = warmup, steps
        self.step_marks: List[Any] = []
        self.records: List[Dict[str, Any]] = []
        self.peak_bytes: Optional[int] = None
        self.data_waits: List[float] = []
        self._record: Optional[Dict[str, Any]] = None
        self._handles: List[Any] = []
        self._depth: Dict[str, int] = {}
        self._open: Dict[str, Any] = {}
        self.roles = sorted({r for n, _ in model.named_children() if (r := _region_role(n))})
        self.has_ema = False

    # -- trainer hooks --------------------------------------------------------------
    def wrap_hooks(self, hooks: List[HookBase]) -> List[HookBase]:
        """``hooks`` with markers first, last and around the EMA hook."""
        from cosmos.engine.ema_hook import EMAHook

        out: List[HookBase] = [_Marker(self, "first")]
        for hook in hooks:
            if isinstance(hook, EMAHook):
                self.has_ema = True
                out += [_Marker(self, "ema_begin"), hook, _Marker(self, "ema_end")]
            else:
                out.append(hook)
        return out + [_Marker(self, "last")]

    def on(self, label: str, event: str, it: int) -> None:
        measure_end = self.warmup + self.steps
        if label == "first" and event == "before_step":
            if it == self.warmup:
                if self.loader is not None:
                    self.loader.waits.clear()
                self.step_marks.append(self.clock.mark())
            if it == measure_end:
                if self.loader is not None:
                    self.data_waits = list(self.loader.waits[: self.steps])
                self._attach()
            if it >= measure_end:
                self._record = {"begin": self.clock.mark(), "intervals": {}}
            return
        if label == "last" and event == "after_step":  # ``it`` = completed steps
            if self.warmup < it <= measure_end:
                self.step_marks.append(self.clock.mark())
            if it == measure_end and self.clock.cuda:
                self.peak_bytes = torch.cuda.max_memory_allocated()
            if self._record is not None:
                self._record["end"] = self.clock.mark()
                self.records.append(self._record)
                self._record = None
            return
        rec = self._record
        if rec is None:
            return
        point = {("first", "after_backward"): "bwd_end", ("last", "after_backward"): "ab_end",
                 ("first", "after_step"): "as_begin"}.get((label, event))
        if point is not None:
            rec[point] = self.clock.mark()
        elif label == "ema_begin":
            self._open[EMA] = self.clock.mark()
        elif label == "ema_end" and EMA in self._open:
            rec["intervals"].setdefault(EMA, []).append((self._open.pop(EMA), self.clock.mark()))

    # -- module hooks ---------------------------------------------------------------
    def _enter(self, region: str) -> None:
        if self._record is None:
            return
        self._depth[region] = self._depth.get(region, 0) + 1
        if self._depth[region] == 1:
            self._open[region] = self.clock.mark()

    def _leave(self, region: str) -> None:
        if self._record is None or self._depth.get(region, 0) == 0:
            return
        self._depth[region] -= 1
        if self._depth[region] == 0:
            self._record["intervals"].setdefault(region, []).append(
                (self._open.pop(region), self.clock.mark()))

    def _hook(self, module: nn.Module, region: str) -> None:
        self._handles.append(module.register_forward_pre_hook(lambda *_: self._enter(region)))
        self._handles.append(module.register_forward_hook(lambda *_: self._leave(region),
                                                          always_call=True))

    def _attach(self) -> None:
        self._hook(self.model, "forward")
        for name, child in self.model.named_children():
            role = _region_role(name)
            if role is None:
                continue
            for path, module in child.named_modules():
                if "_orig_mod" not in path.split("."):  # never inside a compiled region
                    self._hook(module, role)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- results --------------------------------------------------------------------
    def step_times(self) -> List[float]:
        """Milliseconds of each throughput step (after ``clock.sync()``)."""
        return [self.clock.ms(a, b) for a, b in zip(self.step_marks, self.step_marks[1:])]

    def phases(self) -> Optional[PhaseReport]:
        """Mean phase times over the complete instrumented steps (after ``clock.sync()``)."""
        done = [r for r in self.records if all(k in r for k in ("bwd_end", "ab_end", "as_begin"))
                and "forward" in r["intervals"]]
        if not done:
            return None
        ms = self.clock.ms
        names = [STUDENT, *([TEACHER] if TEACHER in self.roles else []),
                 *([LOSS] if LOSS in self.roles else []), BACKWARD, OPTIMIZER,
                 *([EMA] if self.has_ema else []), OTHER]
        sums = dict.fromkeys(names, 0.0)
        total = 0.0
        for r in done:
            span = {k: sum(ms(a, b) for a, b in v) for k, v in r["intervals"].items()}
            fwd_end = r["intervals"]["forward"][-1][1]
            step = ms(r["begin"], r["end"])
            part = {TEACHER: span.get(TEACHER, 0.0), LOSS: span.get(LOSS, 0.0),
                    BACKWARD: ms(fwd_end, r["bwd_end"]), OPTIMIZER: ms(r["ab_end"], r["as_begin"]),
                    EMA: span.get(EMA, 0.0)}
            part[STUDENT] = span["forward"] - part[TEACHER] - part[LOSS]
            named = sum(part[k] for k in names if k != OTHER)
            part[OTHER] = step - named
            for k in names:
                sums[k] += part[k]
            total += step
        n = len(done)
        return PhaseReport(n, total / n, {k: v / n for k, v in sums.items()})


# ----------------------------------------------------------------------------- FLOPs
def _shape(value: Any) -> List[int]:
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(value)
    if shape is None:
        raise ValueError("a traced tensor without a complete shape")
    return list(shape)


def _matmul_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """aten::matmul with broadcasting batch dims and 1-D operands."""
    a, b = _shape(inputs[0]), _shape(inputs[1])
    a2 = [1] + a if len(a) == 1 else a
    b2 = b + [1] if len(b) == 1 else b
    batch = torch.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2]))
    return math.prod(batch) * a2[-2] * a2[-1] * b2[-1]


def _baddbmm_macs(inputs: List[Any], outputs: List[Any]) -> int:
    b, n, k = _shape(inputs[1])
    return b * n * k * _shape(inputs[2])[-1]


def _sdpa_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """SDPA with q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev): Lq·Lk·(E + Ev) per batch·head."""
    q, k, v = (_shape(x) for x in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _bmhk_attention_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """xformers / flash layout: q (B, M, H, K) or packed (ΣM, H, K), k (…, N, H, K),
    v (…, N, H, Kv); a packed (block-diagonal) call is counted as one dense ΣM × ΣN product
    (an upper bound)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    if len(q) == 3:
        q, k, v = [1] + q, [1] + k, [1] + v
    b, m, h, kd = q
    return b * h * m * k[1] * (kd + v[-1])


_ATTENTION_OPS = {
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::_scaled_dot_product_flash_attention": _sdpa_macs,
    "aten::_scaled_dot_product_efficient_attention": _sdpa_macs,
    "aten::_scaled_dot_product_cudnn_attention": _sdpa_macs,
    "aten::_scaled_dot_product_flash_attention_for_cpu": _sdpa_macs,
    "xformers::efficient_attention_forward_cutlass": _bmhk_attention_macs,
    "xformers::efficient_attention_forward_ck": _bmhk_attention_macs,
    "xformers_flash::flash_fwd": _bmhk_attention_macs,
    "xformers_flash3::flash_fwd": _bmhk_attention_macs,
}
def _no_flops(inputs: List[Any], outputs: List[Any]) -> int:
    return 0


_IGNORED_OPS = ("aten::layer_norm", "aten::group_norm", "aten::batch_norm", "aten::instance_norm",
                "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::upsample_bicubic2d",
                "aten::adaptive_avg_pool2d", "aten::grid_sampler")
_COMPUTE_OP = re.compile(r"mm|matmul|conv|einsum|linear|attention|attn|flash", re.I)


def forward_flops(module: nn.Module, inputs: Tuple[torch.Tensor, ...]
                  ) -> Tuple[Dict[str, int], List[str]]:
    """FLOPs (2 per multiply-add) of ``module(*inputs)`` by module path ("" = total), and the
    traced ops that look like matrix work but have no handler (uncounted). Traces with fvcore
    under ``no_grad``; the module's mode and parameters are untouched."""
    try:
        with warnings.catch_warnings():  # fvcore's import warns about torch.jit.script
            warnings.simplefilter("ignore")
            from fvcore.nn import FlopCountAnalysis
    except ImportError:
        raise CosmosError("--flops needs fvcore (pip install fvcore)") from None
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**{name: _no_flops for name in _IGNORED_OPS})  # None would not
    # override fvcore's default handlers (norms, upsampling): count them as 0 explicitly
    analysis.set_op_handle(**_ATTENTION_OPS, **{"aten::matmul": _matmul_macs,
                                                "aten::baddbmm": _baddbmm_macs})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs = analysis.by_module()
        unsupported = analysis.unsupported_ops()
        extra = {n: _bmhk_attention_macs for n in unsupported
                 if re.search(r"xformers|flash", n) and re.search(r"fwd|forward", n)}
        if extra:  # an attention kernel not listed above: count it and trace again
            analysis.set_op_handle(**extra)
            macs, unsupported = analysis.by_module(), analysis.unsupported_ops()
    uncounted = sorted(n for n in unsupported if _COMPUTE_OP.search(n))
    return {k: 2 * int(v) for k, v in macs.items()}, uncounted


class _BatchForward(nn.Module):
    """Flat tensors → the batch dict → meta-arch → total loss (jit tracing takes tensors only)."""

    def __init__(self, meta_arch: nn.Module, batch: Dict[str, Any]) -> None:
        super().__init__()
        self.meta_arch = meta_arch
        self.layout: List[Tuple[str, str, Any]] = []
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                self.layout.append((key, "tensor", 1))
            elif _tensor_list(value):
                self.layout.append((key, "list", len(value)))
            else:
                self.layout.append((key, "const", value))

    def flatten(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, ...]:
        flat: List[torch.Tensor] = []
        for key, kind, _ in self.layout:
            if kind == "tensor":
                flat.append(batch[key])
            elif kind == "list":
                flat.extend(batch[key])
        return tuple(flat)

    def forward(self, *flat: torch.Tensor) -> torch.Tensor:
        batch: Dict[str, Any] = {}
        i = 0
        for key, kind, extra in self.layout:
            if kind == "tensor":
                batch[key], i = flat[i], i + 1
            elif kind == "list":
                batch[key], i = list(flat[i:i + extra]), i + extra
            else:
                batch[key] = extra
        return self.meta_arch(batch)["loss"]


def _frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def count_flops(meta_arch: nn.Module, batch: Dict[str, Any]) -> FlopReport:
    """Forward FLOPs of ``meta_arch(batch)`` by top-level child (plus "(meta-arch)" for ops of the
    meta-architecture itself), with each child's training multiplier (3, or 1 when frozen)."""
    wrapper = _BatchForward(meta_arch, batch)
    flops, uncounted = forward_flops(wrapper, wrapper.flatten(batch))
    forward: Dict[str, float] = {}
    multiplier: Dict[str, int] = {}
    for name, child in meta_arch.named_children():
        forward[name] = float(flops.get(f"meta_arch.{name}", 0))
        multiplier[name] = 1 if _frozen(child) else 3
    forward["(meta-arch)"] = float(flops.get("", 0)) - sum(forward.values())
    multiplier["(meta-arch)"] = 3
    size = int(batch.get("batch_size") or 0) or next(
        v.shape[0] for v in wrapper.flatten(batch))
    return FlopReport(size, forward, multiplier, uncounted)


# ----------------------------------------------------------------------------- runs
@dataclass
class StepSettings:
    """What one ``step`` benchmark runs; ``dtype`` applies on CUDA (CPU trains in fp32)."""

    device: torch.device
    dtype: str = "bf16"
    batch: int = 128
    steps: int = 20
    warmup: int = 5
    phase_steps: int = 3
    data: str = "random"
    text_lengths: str = "template"
    compile: bool = False
    flops: bool = False
    flops_batch: Optional[int] = None
    peak_tflops: float = 989.0

    @property
    def amp(self) -> str:
        return self.dtype if self.device.type == "cuda" else "fp32"


@dataclass
class StepReport:
    results: List[StepResult]
    phases: Optional[PhaseReport] = None
    flops: Optional[FlopReport] = None
    compiled: List[str] = field(default_factory=list)
    flops_error: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return dict(results=[asdict(r) for r in self.results],
                    phases=asdict(self.phases) if self.phases else None,
                    flops=self.flops.as_dict() if self.flops else None,
                    flops_error=self.flops_error or None, compiled_towers=list(self.compiled))


def release(device: torch.device) -> None:
    """Free what can be freed and restart the peak-memory counter."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def _mfu(gflop_per_pair: Optional[float], pairs_per_s: Optional[float],
         settings: StepSettings) -> Optional[float]:
    if settings.device.type != "cuda" or not gflop_per_pair or not pairs_per_s:
        return None
    return gflop_per_pair * pairs_per_s / (settings.peak_tflops * 1e3)


def _summary(setting: str, times: List[float], batch: int, peak: Optional[int]) -> StepResult:
    mean = sum(times) / len(times)
    return StepResult(setting, "ok", batch * get_world_size() * 1e3 / mean, mean,
                      statistics.median(times), None if peak is None else peak / 2**30)


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
        result = _summary(setting, timer.step_times(), s.batch, timer.peak_bytes)
        report.phases = timer.phases()
    except torch.cuda.OutOfMemoryError:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        result = StepResult(setting, "oom", peak_gib=peak, reason=f"CUDA out of memory "
                            f"(peak {peak:.1f} GiB allocated)")
    except CosmosError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        logger.exception("training step failed")
        result = StepResult(setting, "error", reason=_first_line(exc))
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
            report.flops_error = _first_line(exc)
        else:
            result.gflop_per_pair = report.flops.train_per_pair / 1e9
            result.mfu = _mfu(result.gflop_per_pair, result.pairs_per_s, s)
    report.results.append(result)
    del model
    release(device)
    return report, batch or {}


# ----------------------------------------------------------------------------- OpenCLIP
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
        result = _summary(setting, times, s.batch, peak)
        result.gflop_per_pair = gflop
        result.mfu = _mfu(gflop, result.pairs_per_s, s)
    except torch.cuda.OutOfMemoryError:
        result, gflop = StepResult(setting, "oom", reason="CUDA out of memory"), None
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        logger.exception("OpenCLIP step failed")
        result, gflop = StepResult(setting, "error", reason=_first_line(exc)), None
    del model
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
