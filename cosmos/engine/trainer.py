"""A small generic training loop: batch → meta-architecture → loss dict → backward → step.

The trainer knows nothing about CLIP or COSMOS. Everything periodic (schedules, logging,
checkpoints, evaluation, EMA, NaN guard) is a hook. ``trainer.iter`` counts completed steps.

Host synchronisation: a step turns device values (loss terms, gradient norm, the model's extra
metrics) into Python numbers only when ``trainer.sync_step`` is True: at steps that are a
multiple of some hook's ``period`` (the metric writer's ``train.log_period``, checkpoints,
evaluation), at the last step and when a stop was requested. Other steps queue their work on
the device without waiting for it. With several processes every step still runs one small
``all_reduce`` (two numbers) to agree on a stop request.
"""
from __future__ import annotations

import contextlib
import logging
import time
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import torch
from torch import nn

from cosmos.distributed import preemption
from cosmos.distributed.fsdp import get_train_state, set_train_state
from cosmos.distributed.preemption import TrainingInterrupted
from cosmos.engine.hook_base import HookBase
from cosmos.utils.distributed import barrier, get_world_size
from cosmos.utils.events import EventStorage

logger = logging.getLogger(__name__)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts and lists) → device; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return [move_to_device(v, device) for v in batch]
    return batch


def _after_first(iterator: Iterator[Any], callback: Callable[[], None]) -> Iterator[Any]:
    """``iterator``'s items; ``callback()`` runs right after the first one is fetched."""
    try:
        first = next(iterator)
    except StopIteration:
        return
    callback()
    yield first
    yield from iterator


def _keyed_by_name(optim_state: Dict[str, Any]) -> bool:
    groups = optim_state.get("param_groups") or []
    return any(isinstance(p, str) for g in groups for p in g.get("params", []))


class Trainer:
    """Runs ``max_iter`` optimizer steps of ``model(batch)["loss"]``.

    Args:
        model: a meta-architecture; ``model(batch)`` returns a dict of scalar loss terms that
            includes the total ``loss``.
        data_loader: an endless iterable of batch dicts; optional ``state_dict``/``load_state_dict``
            make the data position part of checkpoints.
        amp_dtype: None (fp32), ``"bf16"`` or ``"fp16"`` (fp16 uses a GradScaler); CUDA only.
        grad_clip: max global gradient norm, or None.
        forward_model: what runs the forward pass when it is not ``model`` itself: the DDP or
            FSDP wrapper of ``model``. Hooks, checkpoints and evaluation always see ``model``.
        batch_augment: ``batch_augment(batch, device) -> batch``, run on each batch as it
            leaves the loader (e.g. ``batch_augments.dino_photometric``: the photometric half of
            the fast multi-crop, on the training device), or None.

    With several processes the logged loss terms are averaged over ranks, and a stop request
    (:mod:`cosmos.distributed.preemption`) on any rank stops every rank after the same step: the
    hooks run (the checkpointer saves) and :class:`TrainingInterrupted` is raised.
    """

    def __init__(self, model: nn.Module, data_loader: Iterable, optimizer: torch.optim.Optimizer,
                 max_iter: int, device: torch.device, amp_dtype: Optional[str] = None,
                 grad_clip: Optional[float] = None,
                 forward_model: Optional[nn.Module] = None,
                 batch_augment: Optional[Callable[[Any, torch.device], Any]] = None) -> None:
        self.model, self.data_loader, self.optimizer = model, data_loader, optimizer
        self.batch_augment = batch_augment
        self.forward_model = forward_model if forward_model is not None else model
        self.max_iter, self.device, self.grad_clip = int(max_iter), device, grad_clip
        if device.type != "cuda":
            amp_dtype = None  # CPU trains in fp32
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[amp_dtype]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.iter = 0
        self.storage = EventStorage()
        self.hooks: List[HookBase] = []
        self.loss_dict: Dict[str, torch.Tensor] = {}
        self.stop_signal: Optional[int] = None  # agreed across ranks: stop after this step
        self.sync_step = True  # this step turns device values into Python numbers (module doc)
        self._data_iter = None
        self._pending_rng: Dict[str, torch.Tensor] = {}  # a checkpoint's generator states

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        for hook in hooks:
            if hook is not None:
                hook.trainer = weakref.proxy(self)
                self.hooks.append(hook)

    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)()

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train(self) -> None:
        logger.info("training from step %d to %d", self.iter, self.max_iter)
        self.model.train()
        # a resume's RNG is restored once the first batch is fetched: a DataLoader draws its
        # base seed from the global generator when the first batch is asked for
        self._data_iter = _after_first(iter(self.data_loader), self._restore_rng)
        self._call("before_train")
        try:
            while self.iter < self.max_iter:
                self.storage.iter = self.iter + 1
                self._call("before_step")
                self.run_step()
                self.iter += 1
                self._call("after_step")  # the checkpointer saves when stop_signal is set
                if self.stop_signal is not None:
                    barrier()  # no rank exits before rank 0 has written the checkpoint
                    raise TrainingInterrupted(self.iter, self.stop_signal)
        finally:
            self._call("after_train")

    def _is_sync_step(self, step: int) -> bool:
        """True at the last step and at multiples of any hook's ``period`` (same on all ranks)."""
        if step >= self.max_iter:
            return True
        periods = (getattr(h, "period", 0) for h in self.hooks)
        return any(isinstance(p, int) and p > 0 and step % p == 0 for p in periods)

    def run_step(self) -> None:
        start = time.perf_counter()
        self.sync_step = self._is_sync_step(self.iter + 1)
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start
        if self.batch_augment is not None:
            batch = self.batch_augment(batch, self.device)
        batch = move_to_device(batch, self.device)
        with self.autocast():
            loss_dict = self.forward_model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_dict["loss"]).backward()
        self.loss_dict = self._reduce_across_ranks(loss_dict)
        self._call("after_backward")
        grad_norm = None
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        step_time = time.perf_counter() - start
        batch_size = batch.get("batch_size", 0) if isinstance(batch, dict) else 0
        if self.sync_step:  # device → host: the only waits of a step (module docstring)
            self.storage.put_scalars(**{k: float(v) for k, v in self.loss_dict.items()})
            if grad_norm is not None:
                self.storage.put_scalar("grad_norm", float(grad_norm))
            extra = getattr(self.model, "extra_metrics", None)
            if callable(extra):
                self.storage.put_scalars(**extra())
        self.storage.put_scalars(time=step_time, data_time=data_time,
                                 lr=self.optimizer.param_groups[0]["lr"])
        if batch_size:
            self.storage.put_scalar("pairs_per_s", batch_size * get_world_size() / step_time)
        data_metrics = getattr(self.data_loader, "metrics", None)
        if callable(data_metrics):  # e.g. data/samples, data/bad_fraction
            self.storage.put_scalars(**data_metrics())

    def _reduce_across_ranks(self, loss_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Loss terms (detached), averaged over ranks at sync steps, and ``stop_signal`` agreed by
        all ranks.

        One ``all_reduce`` per step: the stop flags, plus the loss terms at sync steps (a step
        that becomes one through a stop request reduces its terms in a second one), so a NaN on
        any rank reaches all of them by the next sync step. Other steps return this rank's terms.
        """
        values = {k: v.detach().float() for k, v in loss_dict.items()}
        requested = preemption.stop_requested()
        if get_world_size() == 1:
            self.stop_signal = requested
            self.sync_step = self.sync_step or requested is not None
            return values
        device = loss_dict["loss"].device
        flags = torch.tensor([float(requested is not None), float(requested or 0)], device=device)
        terms = torch.stack(list(values.values()))
        packed = torch.cat([terms, flags]) if self.sync_step else flags
        torch.distributed.all_reduce(packed)
        world = get_world_size()
        signalled, signum_sum = packed[-2].item(), packed[-1].item()
        # a rank that was not signalled stops with the signal the others got
        self.stop_signal = requested if requested is not None else (
            round(signum_sum / signalled) if signalled else None)
        if not self.sync_step and self.stop_signal is not None:  # agreed by all: reduce terms now
            self.sync_step = True
            packed = torch.cat([terms, flags])
            torch.distributed.all_reduce(packed[:-2])
        if not self.sync_step:
            return values
        return {k: packed[i] / world for i, k in enumerate(values)}

    # -- checkpoint state -------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything a resume needs. Model and optimizer state are consolidated (full, CPU,
        optimizer keyed by parameter name), so a checkpoint loads at any world size, with or
        without FSDP. A collective with several processes: every rank calls it, rank 0 saves."""
        model_state, optim_state = get_train_state(self.model, self.optimizer)
        state = {
            "iter": self.iter,
            "model": model_state,
            "optimizer": optim_state,
            "scaler": self.scaler.state_dict(),
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks if h.state_dict()},
            "rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if hasattr(self.data_loader, "state_dict"):
            state["data"] = self.data_loader.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        optim_state = state["optimizer"]
        if _keyed_by_name(optim_state):
            set_train_state(self.model, self.optimizer, state["model"], optim_state)
        else:  # checkpoints written before consolidation: optimizer.state_dict()'s index keys
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(optim_state)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        hooks = state.get("hooks", {})
        for hook in self.hooks:
            if type(hook).__name__ in hooks:
                hook.load_state_dict(hooks[type(hook).__name__])
        if hasattr(self.data_loader, "load_state_dict"):
            self.data_loader.load_state_dict(state.get("data"))
        # restored by train() once the first batch is fetched (see _restore_rng)
        self._pending_rng = {k: state[k] for k in ("rng", "cuda_rng") if k in state}
        self.iter = int(state["iter"])

    def _restore_rng(self) -> None:
        """Global CPU (and this device's CUDA) generator as the checkpoint saved them."""
        pending, self._pending_rng = self._pending_rng, {}
        if "rng" in pending:
            torch.set_rng_state(pending["rng"])
        if "cuda_rng" in pending and self.device.type == "cuda":
            torch.cuda.set_rng_state(pending["cuda_rng"], self.device)
