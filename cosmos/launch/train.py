"""The training entry shared by ``tools/train_net.py`` (local processes, torchrun) and
``tools/submit.py`` (SLURM tasks): join the process group, build, train or evaluate, export.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, Optional, Sequence

from cosmos.checkpoint import Checkpointer
from cosmos.config import instantiate
from cosmos.engine.defaults import (
    build_evaluators, build_trainer, default_setup, evaluate, export_encoders, load_config,
    load_model_weights, resume_request, select_device, write_results)
from cosmos.launch import preemption
from cosmos.launch.env import destroy_distributed, detect_env, init_distributed
from cosmos.launch.preemption import STOP_SIGNALS, TrainingInterrupted
from cosmos.utils.distributed import barrier, is_main_process

logger = logging.getLogger("cosmos")



def _final_results(trainer) -> Dict[str, float]:
    return next((h.last_results for h in trainer.hooks if hasattr(h, "last_results")), {})


def do_train(cfg, output_dir: str, resume: str) -> Dict[str, float]:
    trainer = build_trainer(cfg, output_dir, resume=resume)
    trainer.train()  # raises TrainingInterrupted after saving when a stop was requested
    export_encoders(trainer.model, output_dir)
    results = _final_results(trainer)
    if results and is_main_process():
        write_results(results, os.path.join(output_dir, "eval"), trainer.iter)
    return results


def do_eval(cfg, output_dir: str, checkpoint: str) -> Dict[str, float]:
    model = instantiate(cfg.model).to(select_device(cfg.train.get("device", "auto")))
    path = checkpoint or Checkpointer(os.path.join(output_dir, "checkpoints"), enabled=False).latest()
    if path:
        load_model_weights(model, path)
    results = evaluate(model, build_evaluators(cfg))
    if is_main_process():
        write_results(results, os.path.join(output_dir, "eval"), step=0)
    return results


def train_main(args: argparse.Namespace,
               stop_signals: Optional[Sequence[int]] = STOP_SIGNALS) -> Dict[str, float]:
    """Train (or ``--eval-only``) the config of ``args`` in this process's place in the job.

    ``stop_signals``: installed as stop requests (see :mod:`cosmos.launch.preemption`); a stopped
    run raises :class:`TrainingInterrupted` after its checkpoint is saved.
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
            results = do_train(cfg, output_dir, resume=resume)
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
        if stop_signals:
            preemption.uninstall()
        destroy_distributed()
