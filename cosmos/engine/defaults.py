"""Convenience defaults shared by the entry points in ``tools/``: argument parser, run-directory
setup, building the trainer from a config, evaluation and export. Opinionated by design; the
stable core is ``trainer.py`` and ``hooks.py``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from cosmos.checkpoint import Checkpointer, check_metadata, load_checkpoint, model_metadata
from cosmos.checkpoint.checkpointer import describe_write_failure
from cosmos.config import LazyConfig, instantiate
from cosmos.config.lazy import import_plugins
from cosmos.config.typecheck import check_section, check_types
from cosmos.distributed.fsdp import get_model_state, is_fsdp, wrap_fsdp
from cosmos.engine import hooks as H
from cosmos.engine.run_lock import RunDirectoryBusy, RunLock, describe_holder
from cosmos.engine.trainer import Trainer
from cosmos.utils.atomic import atomic_write, atomic_write_text
from cosmos.utils.cli import ArgumentParser, add_resume_arguments
from cosmos.utils.distributed import get_rank, get_world_size, is_dist, is_main_process
from cosmos.utils.errors import CheckpointError, CosmosError, NonFiniteLossError, one_line
from cosmos.utils.events import JSONWriter, ProgressPrinter, report_writers
from cosmos.utils.logger import setup_logger

logger = logging.getLogger("cosmos")


def default_argument_parser(description: str = "cosmos training") -> argparse.ArgumentParser:
    """``--config-file``, ``--resume [latest|PATH]`` / ``--no-resume``, ``--eval-only``,
    ``--checkpoint`` and the trailing ``key=value`` overrides (see :func:`resume_request`)."""
    parser = ArgumentParser(description=description)
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="LazyConfig .py or .yaml")
    add_resume_arguments(parser)
    parser.add_argument("--eval-only", action="store_true", help="evaluate and exit")
    parser.add_argument("--checkpoint", default="", help="weights for --eval-only")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides key=value (+key=value adds a new key)")
    return parser


def resume_request(args: argparse.Namespace) -> str:
    """What the command line asks for: ``auto`` (continue when the run directory has a
    checkpoint), ``latest`` (require one), ``never`` (``--no-resume``) or a checkpoint path."""
    resume = getattr(args, "resume", None)
    no_resume = bool(getattr(args, "no_resume", False))
    if no_resume and resume not in (None, False):
        raise CosmosError("--resume and --no-resume contradict each other; give one of them")
    if no_resume:
        return "never"
    if resume in (None, False, "", "auto"):
        return "auto"
    return "latest" if resume in (True, "latest") else str(resume)


def load_config(config_file: str, overrides) -> Any:
    return load_config_overrides(LazyConfig.load(config_file), overrides)


# What the run settings take (``train`` has no target whose signature would say it).
TRAIN_SETTINGS: Dict[str, Any] = {
    "output_dir": str, "max_iter": int, "seed": int, "device": Optional[str],
    "grad_clip": Optional[float], "max_logit_scale": float, "checkpoint_period": int,
    "max_to_keep": Optional[int], "eval_period": int, "log_period": int,
    "init_checkpoint": Optional[str], "hooks": Optional[List[Any]],
}


def load_config_overrides(cfg: Any, overrides) -> Any:
    """Apply command-line overrides to a loaded config, import plugins they name, and check
    every value against the parameter it is passed to (one-line error before anything runs)."""
    cfg = LazyConfig.apply_overrides(cfg, list(overrides or []))
    import_plugins(cfg, "overrides")  # an `imports` list may come from the command line
    check_types(cfg)
    check_section(cfg.get("train"), TRAIN_SETTINGS, "train")
    return cfg


def prepare_output_dir(path: str) -> str:
    """Create the run directory and check it is writable; one-line error otherwise."""
    if not path:
        raise CosmosError("train.output_dir is empty; set train.output_dir=PATH")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise CosmosError(
            f"output directory {path} is not writable: {exc.strerror or exc}") from None
    return path


def select_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU. A plain ``cuda`` is this process's GPU."""
    if name in ("auto", "", None):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CosmosError(f"train.device={name} but CUDA is not available; use train.device=cpu")
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def default_setup(cfg: Any, args: argparse.Namespace) -> str:
    """Run directory (locked for training: one writer), logging and seeds. Returns the output
    directory. The config is saved by :func:`save_run_config` once it has built."""
    output_dir = prepare_output_dir(cfg.train.output_dir)
    if not getattr(args, "eval_only", False):
        acquire_run_lock(output_dir)
    setup_logger(output_dir, rank=get_rank())
    logger.info("command: %s", " ".join(sys.argv))
    if _run_lock is not None and _run_lock.took_over:
        logger.info("took over the run directory's lock from %s (no longer running)",
                    describe_holder(_run_lock.took_over))
    logger.info("torch %s, device %s, output_dir %s", torch.__version__,
                cfg.train.get("device", "auto"), os.path.abspath(output_dir))
    seed_all(int(cfg.train.seed))
    torch.set_float32_matmul_precision("high")
    return output_dir


_run_lock: Optional[RunLock] = None


def acquire_run_lock(output_dir: str) -> None:
    """Rank 0 locks ``output_dir`` (:mod:`cosmos.engine.run_lock`); every rank gets its verdict,
    so that a busy directory stops all ranks with the same line."""
    global _run_lock
    error = None
    if is_main_process():
        lock = RunLock(output_dir)
        try:
            lock.acquire()
            release_run_lock()
            _run_lock = lock
        except RunDirectoryBusy as exc:
            error = str(exc)
    if is_dist():
        box = [error]
        torch.distributed.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise RunDirectoryBusy(error)


def release_run_lock() -> None:
    global _run_lock
    if _run_lock is not None:
        _run_lock.release()
        _run_lock = None


def save_run_config(cfg: Any, config_file: str, output_dir: str) -> None:
    """Rank 0 writes ``config.yaml`` (resolved, reloadable), keeping a differing earlier one as
    ``config.yaml.N``. Call it once the config has built: a config that fails never replaces
    the run's."""
    if is_main_process():
        _save_config(cfg, config_file, output_dir)


def _save_config(cfg: Any, config_file: str, output_dir: str) -> None:
    """Write ``config.yaml`` (resolved, reloadable); keep a differing earlier one as a backup."""
    path = os.path.join(output_dir, "config.yaml")
    if os.path.exists(path):
        tmp = os.path.join(output_dir, "config.new.yaml")
        LazyConfig.save(cfg, tmp)
        with open(path) as a, open(tmp) as b:
            same = a.read() == b.read()
        if not same:
            n = 1
            while os.path.exists(f"{path}.{n}"):
                n += 1
            os.replace(path, f"{path}.{n}")
            logger.info("config differs from the run's earlier one; kept it as config.yaml.%d", n)
        os.replace(tmp, path)
    else:
        LazyConfig.save(cfg, path)
    if config_file.endswith(".py"):
        shutil.copyfile(config_file, os.path.join(output_dir, "config_source.py"))


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """Instantiate ``cfg.optimizer`` with the model injected as ``params.model``."""
    cfg.optimizer.params.model = model
    try:
        return instantiate(cfg.optimizer)
    finally:
        cfg.optimizer.params.model = None


def build_evaluators(cfg: Any) -> Dict[str, Callable]:
    evaluation = cfg.get("evaluation") or {}
    return {name: instantiate(node) for name, node in evaluation.items() if node is not None}


def evaluate(meta_arch: nn.Module, evaluators: Dict[str, Callable],
             encoders: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Run every evaluator on every encoder of the meta-architecture (student, teacher …).

    Keys are ``encoder/metric`` with one evaluator, ``encoder/evaluator/metric`` with several.
    ``encoders`` restricts which encoders run (an unknown name is an error).
    """
    results: Dict[str, float] = {}
    available = meta_arch.encoders() if hasattr(meta_arch, "encoders") else {"model": meta_arch}
    if encoders:
        unknown = [e for e in encoders if e not in available]
        if unknown:
            raise CosmosError(f"unknown encoder(s) {unknown}; this model has {sorted(available)}")
        available = {name: available[name] for name in encoders}
    for enc_name, encoder in available.items():
        for ev_name, evaluator in evaluators.items():
            start = time.perf_counter()
            prefix = f"{enc_name}/" if len(evaluators) == 1 else f"{enc_name}/{ev_name}/"
            for key, value in evaluator(encoder).items():
                results[prefix + key] = value
            logger.info("evaluated %s on %s in %.1f s", enc_name, ev_name,
                        time.perf_counter() - start)
    return results


def write_results(results: Dict[str, float], eval_dir: str, step: int,
                  name: str = "results") -> None:
    """``eval/<name>.json`` and ``eval/<name>.md`` (a table): the final results of a training
    run (``results``), or of an ``--eval-only`` pass (``results_NNNNNNN``: its checkpoint's
    step)."""
    os.makedirs(eval_dir, exist_ok=True)
    atomic_write_text(os.path.join(eval_dir, f"{name}.json"),
                      json.dumps({"iter": step, **results}, indent=2, sort_keys=True))
    lines = [f"# Evaluation at step {step}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in sorted(results.items())]
    atomic_write_text(os.path.join(eval_dir, f"{name}.md"), "\n".join(lines) + "\n")


def load_model_weights(model: nn.Module, path: str, state: Optional[Dict[str, Any]] = None) -> None:
    """Load a model (or a full training checkpoint's ``model`` entry) with a one-line error.

    ``state``: the checkpoint at ``path`` when the caller has already loaded it.
    """
    state = load_checkpoint(path) if state is None else state
    check_metadata(model_metadata(model), state, path)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                      str(exc).strip().splitlines()[0])
        raise CheckpointError(f"checkpoint {path} does not fit the model: {detail[:240]}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:2]})")


def wrap_for_training(model: nn.Module, cfg: Any, device: torch.device) -> nn.Module:
    """The module that runs the forward pass: ``model`` itself with one process, else its DDP
    wrapper, or ``model`` sharded in place with ``train.distributed.strategy=fsdp``."""
    if get_world_size() == 1:
        return model
    options = cfg.train.get("distributed") or {}
    strategy = options.get("strategy", "ddp")
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(options.get("find_unused_parameters", False)))
    if strategy == "fsdp":
        amp = cfg.train.get("amp") or {}
        use_amp = amp.get("enabled", False) and device.type == "cuda"
        precision = amp.get("dtype") if use_amp else None
        return wrap_fsdp(model, mixed_precision=precision)
    raise CosmosError(f"train.distributed.strategy must be 'ddp' or 'fsdp', got {strategy!r}")


def evaluate_on_main(run: Callable[[], Dict[str, float]]) -> Dict[str, float]:
    """Run an evaluation on rank 0 only; every rank gets its results."""
    results = run() if is_main_process() else None
    if is_dist():
        box = [results]
        torch.distributed.broadcast_object_list(box, src=0)
        results = box[0]
    return results


def make_evaluate(cfg: Any, model: nn.Module, evaluators: Dict[str, Callable],
                  device: torch.device) -> Callable[[], Dict[str, float]]:
    """The trainer's evaluation: rank 0 evaluates ``model``; an FSDP-sharded model is first
    consolidated (all ranks) into a plain copy on rank 0."""

    def run() -> Dict[str, float]:
        if not is_fsdp(model):
            return evaluate_on_main(lambda: evaluate(model, evaluators))
        state = get_model_state(model)  # collective; rank 0 receives the full state

        def on_main() -> Dict[str, float]:
            with torch.random.fork_rng(devices=[]):  # building the copy must not move the RNG
                plain = instantiate(cfg.model).to(device)
            plain.load_state_dict(state)
            return evaluate(plain, evaluators)
        return evaluate_on_main(on_main)
    return run


def build_trainer(cfg: Any, output_dir: str, resume: Any = "auto") -> Trainer:
    """Model, optimizer, loader, hooks, and the state to start from (``resume``: see
    :func:`_restore`)."""
    device = select_device(cfg.train.get("device", "auto"))
    model = instantiate(cfg.model).to(device)
    metadata = model_metadata(model)  # before wrapping
    forward_model = wrap_for_training(model, cfg, device)
    optimizer = build_optimizer(cfg, model)
    data_loader = instantiate(cfg.dataloader.train)
    amp = cfg.train.get("amp") or {}
    trainer = Trainer(model, data_loader, optimizer, cfg.train.max_iter, device,
                      amp_dtype=amp.get("dtype") if amp.get("enabled", False) else None,
                      grad_clip=cfg.train.get("grad_clip"), forward_model=forward_model,
                      batch_augment=build_batch_augment(cfg))
    checkpointer = Checkpointer(os.path.join(output_dir, "checkpoints"),
                                max_to_keep=cfg.train.get("max_to_keep"), enabled=is_main_process(),
                                metadata=metadata)
    evaluators = build_evaluators(cfg)
    eval_hook = H.EvalHook(cfg.train.get("eval_period", 0),
                           make_evaluate(cfg, model, evaluators, device),
                           os.path.join(output_dir, "eval")) if evaluators else None
    writers = [ProgressPrinter(cfg.train.max_iter,
                               eval_eta=eval_hook.remaining if eval_hook else None)]
    if is_main_process():
        writers += [JSONWriter(os.path.join(output_dir, "metrics.jsonl")),
                    *report_writers(cfg.train, output_dir, _run_config(cfg))]
    extra_hooks = [instantiate(h) for h in (cfg.train.get("hooks") or [])]
    trainer.register_hooks([
        *build_step_hooks(cfg, model, extra_hooks),
        eval_hook,
        H.PeriodicCheckpointer(checkpointer, cfg.train.checkpoint_period),
        H.PeriodicWriter(writers, cfg.train.log_period),
    ])
    _restore(trainer, checkpointer, cfg, resume)
    return trainer


def _run_config(cfg: Any) -> Dict[str, Any]:
    """The run's config as plain data (what ``config.yaml`` holds), for experiment trackers."""
    return LazyConfig.to_dict(cfg)


def build_batch_augment(cfg: Any) -> Optional[Callable]:
    """``dataloader.augment`` (the batch step of the fast multi-crop), or None."""
    node = cfg.get("dataloader", {}).get("augment")
    return instantiate(node) if node is not None else None


def build_step_hooks(cfg: Any, model: nn.Module, extra_hooks: Sequence[Optional[H.HookBase]] = ()
                     ) -> List[Optional[H.HookBase]]:
    """The hooks that belong to every training step, in training's order: lr/wd schedule, NaN
    guard, EMA teacher update (when the config has ``ema`` and ``model`` a teacher),
    ``extra_hooks``, logit-scale clamp. ``None`` entries (no EMA) are skipped by
    ``Trainer.register_hooks``."""
    return [
        H.ParamSchedule(instantiate(cfg.lr_multiplier),
                        instantiate(cfg.wd_multiplier) if cfg.get("wd_multiplier") else None),
        H.NaNGuard(),
        build_ema_hook(cfg, model),
        *extra_hooks,
        H.LogitScaleClamp(cfg.train.get("max_logit_scale", 100.0)),
    ]


def build_ema_hook(cfg: Any, model: nn.Module) -> Optional[H.HookBase]:
    """The EMA teacher hook when the config has an ``ema`` section and ``model`` a teacher
    (``ema_parameters()`` not empty: an ablation without distillation has none)."""
    if not cfg.get("ema") or not getattr(model, "ema_parameters", lambda: ([], []))()[0]:
        return None
    from cosmos.engine.ema_hook import EMAHook
    return EMAHook(instantiate(cfg.ema.momentum),
                   before_optimizer_step=bool(cfg.ema.get("before_optimizer_step", False)))


def _restore(trainer: Trainer, checkpointer: Checkpointer, cfg: Any, resume: Any) -> None:
    """``resume``: ``auto`` | ``latest`` | ``never`` | a training checkpoint path (see
    :func:`resume_request`; ``True`` / ``False`` mean ``auto`` / ``never``)."""
    mode = ("auto" if resume else "never") if isinstance(resume, bool) else resume
    existing = checkpointer.all_checkpoints()
    if mode == "never" and existing:
        raise CosmosError(
            f"{checkpointer.save_dir} already holds {len(existing)} checkpoint(s); "
            "drop --no-resume to continue that run, or choose another train.output_dir")
    if mode == "latest" and not existing:
        raise CosmosError(f"--resume: no checkpoint in {checkpointer.save_dir} to continue from; "
                          "drop --resume to start a new run, or give --resume PATH")
    source = checkpointer.save_dir
    if mode == "never":
        state = None
    elif mode in ("auto", "latest") or existing:  # a run's own checkpoints win over PATH
        state = checkpointer.load_latest()
    else:
        source, state = mode, load_checkpoint(mode)
    if state is not None:
        check_metadata(checkpointer.metadata or {}, state, source)
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint in {source} does not fit this config: "
                                  f"{one_line(str(exc))}") from exc
        logger.info("resumed at step %d from %s", trainer.iter, source)
    elif cfg.train.get("init_checkpoint"):
        from cosmos.engine.pretrained import load_init_checkpoint
        load_init_checkpoint(trainer.model, cfg.train.init_checkpoint)
        logger.info("initialised weights from %s", cfg.train.init_checkpoint)


def encoder_states(meta_arch: nn.Module) -> Dict[str, Dict[str, torch.Tensor]]:
    """``{encoder name: its full state dict on CPU}``. Under FSDP a collective (every rank
    calls it; rank 0 receives the states, the others empty dicts)."""
    encoders = meta_arch.encoders()
    if not is_fsdp(meta_arch):
        return {name: {k: v.detach().cpu() for k, v in enc.state_dict().items()}
                for name, enc in encoders.items()}
    full = get_model_state(meta_arch)
    paths = {id(module): path for path, module in meta_arch.named_modules()}
    out = {}
    for name, enc in encoders.items():
        prefix = paths[id(enc)] + "." if paths[id(enc)] else ""
        out[name] = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    return out


def export_encoders(meta_arch: nn.Module, output_dir: str) -> None:
    """Write ``<name>.pth`` (state dict) for each encoder of the meta-architecture (rank 0)."""
    states = encoder_states(meta_arch)
    if not is_main_process():
        return
    for name, state in states.items():
        path = os.path.join(output_dir, f"{name}.pth")
        try:
            atomic_write(path, lambda f, s=state: torch.save(s, f))
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "PytorchStreamWriter" not in str(exc):
                raise
            raise CosmosError(f"{describe_write_failure(path, exc)}; the checkpoints in "
                              f"{os.path.join(output_dir, 'checkpoints')} are intact") from exc


def save_after_nonfinite_loss(trainer: Trainer, weights_finite: bool = True) -> str:
    """After a NaN/Inf stop (before the optimizer step of ``trainer.iter + 1``): save the last
    good step's training state as a checkpoint, unless it is saved already or the weights are no
    longer finite (the NaN guard found the bad step only at a later sync step). Every rank calls
    it (the state is gathered from all ranks). Returns what happened, for the error line."""
    step = trainer.iter
    if not weights_finite:
        return ("nothing was saved, the weights are no longer finite (set train.log_period=1 to "
                "check every step)")
    if step == 0:
        return "no step completed, so no checkpoint was saved"
    hook = next((h for h in trainer.hooks if isinstance(h, H.PeriodicCheckpointer)), None)
    if hook is None:
        return f"the weights of step {step} were not saved (no checkpointer)"
    checkpointer = hook.checkpointer
    path = checkpointer.path_for(step)
    if not (hook.period > 0 and step % hook.period == 0):  # same verdict on every rank
        try:
            checkpointer.save(step, trainer.state_dict())
        except CosmosError as exc:
            return f"the weights of step {step} were NOT saved ({exc})"
    return (f"the weights of step {step} are saved in {path}; running again resumes from "
            "there (lower optimizer.lr or set train.grad_clip first)")


def train_or_save_on_nonfinite(trainer: Trainer) -> None:
    """``trainer.train()``; a NaN/Inf stop saves the last good step and says so in its line."""
    try:
        trainer.train()
    except NonFiniteLossError as exc:
        saved = save_after_nonfinite_loss(trainer, exc.weights_finite)
        raise NonFiniteLossError(f"{exc}; {saved}", exc.weights_finite) from exc


def run_cli(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """Run ``main(args)``; user errors print one line (``COSMOS_TRACEBACK=1`` shows the trace)."""
    try:
        return main(args)
    except CosmosError as exc:
        if os.environ.get("COSMOS_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
