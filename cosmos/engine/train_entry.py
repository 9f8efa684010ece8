"""The training entry shared by ``tools/train_net.py`` (local processes, torchrun) and
``tools/submit.py`` (SLURM tasks): join the process group, build, train or evaluate, export.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, Optional, Sequence

from cosmos.checkpoint import Checkpointer, load_checkpoint
from cosmos.config import instantiate
from cosmos.engine.defaults import (
    build_evaluators, build_trainer, default_setup, evaluate, export_encoders, load_config,
    load_model_weights, release_run_lock, resume_request, save_run_config, select_device,
    train_or_save_on_nonfinite, write_results)
from cosmos.distributed import preemption
from cosmos.distributed.env import destroy_distributed, detect_env, init_distributed
from cosmos.distributed.preemption import STOP_SIGNALS, TrainingInterrupted
from cosmos.utils.distributed import barrier, is_main_process
from cosmos.utils.errors import CheckpointError

logger = logging.getLogger("cosmos")


def _final_results(trainer) -> Dict[str, float]:
    return next((h.last_results for h in trainer.hooks if hasattr(h, "last_results")), {})


def do_train(cfg, output_dir: str, resume: str, config_file: str = "") -> Dict[str, float]:
    trainer = build_trainer(cfg, output_dir, resume=resume)
    save_run_config(cfg, config_file, output_dir)  # only a config that has built replaces it
    train_or_save_on_nonfinite(trainer)  # raises TrainingInterrupted after a requested stop
    export_encoders(trainer.model, output_dir)
    results = _final_results(trainer)
    if results and is_main_process():
        write_results(results, os.path.join(output_dir, "eval"), trainer.iter)
    return results


def do_eval(cfg, output_dir: str, checkpoint: str) -> Dict[str, float]:
    """Evaluate ``checkpoint`` (default: the run's last one; ``init``: the initial weights,
    i.e. the config's ``train.init_checkpoint`` or a fresh initialisation). Results go to
    ``eval/results_NNNNNNN.json`` and ``.md`` (the checkpoint's step), never to the training
    run's ``eval/results.json``."""
    model = instantiate(cfg.model).to(select_device(cfg.train.get("device", "auto")))
    ckpt_dir = os.path.join(output_dir, "checkpoints")
    if checkpoint == "init":
        init = cfg.train.get("init_checkpoint")
        if init:
            load_model_weights(model, init)
        source = init or f"fresh initialisation, seed {cfg.train.seed}"
        step, what = 0, f"the initial weights ({source})"
    else:
        path = checkpoint or Checkpointer(ckpt_dir, enabled=False).latest()
        if not path:
            raise CheckpointError(
                f"--eval-only: {ckpt_dir} holds no checkpoint to evaluate; train first, give "
                "--checkpoint PATH, or --checkpoint init to evaluate the initial weights")
        state = load_checkpoint(path)
        load_model_weights(model, path, state)
        step = int(state["iter"]) if isinstance(state, dict) and "iter" in state else None
        what = f"checkpoint {path}" + (f" (step {step})" if step is not None else "")
    logger.info("evaluating %s", what)
    results = evaluate(model, build_evaluators(cfg))
    if is_main_process():
        name = (f"results_{step:07d}" if step is not None
                else "results_" + os.path.splitext(os.path.basename(checkpoint))[0])
        write_results(results, os.path.join(output_dir, "eval"), step or 0, name=name)
        logger.info("results of %s written to %s", what,
                    os.path.join(output_dir, "eval", name + ".json"))
    return results


def train_main(args: argparse.Namespace,
               stop_signals: Optional[Sequence[int]] = STOP_SIGNALS) -> Dict[str, float]:
    """Train (or ``--eval-only``) the config of ``args`` in this process's place in the job.

    ``stop_signals``: installed as stop requests (see :mod:`cosmos.distributed.preemption`); a
    stopped run raises :class:`TrainingInterrupted` after its checkpoint is saved.
    """
    resume = resume_request(args)  # contradictory flags fail before anything starts
    cfg = load_config(args.config_file, args.opts)
    dist_cfg = cfg.train.get("distributed") or {}
    env = init_distributed(detect_env(), backend=dist_cfg.get("backend", "auto"),
                           timeout_min=float(dist_cfg.get("timeout_min", 30)))
    if stop_signals:
        preemption.install(stop_signals)
    try:
        output_dir = default_setup(cfg, args)
        if env.distributed:
            logger.info("process %d of %d (local rank %d), environment from %s", env.rank,
                        env.world_size, env.local_rank, env.source)
        if args.eval_only:
            results = do_eval(cfg, output_dir, args.checkpoint)
        else:
            results = do_train(cfg, output_dir, resume=resume,
                               config_file=args.config_file)
        if results:
            logger.info("final evaluation:\n%s", "\n".join(
                f"  {k:40s} {v:6.2f}" for k, v in sorted(results.items())))
        logger.info("run directory: %s", os.path.abspath(output_dir))
        barrier()
        return results
    except TrainingInterrupted as exc:
        logger.warning("%s", exc)
        raise
    finally:
        release_run_lock()
        if stop_signals:
            preemption.uninstall()
        destroy_distributed()
