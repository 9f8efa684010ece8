#!/usr/bin/env python
"""Train (or evaluate) any cosmos LazyConfig.

    python tools/train_net.py --config-file configs/clip/clip_tiny_synthetic.py [key=value ...]

Running the same command again in the same ``train.output_dir`` resumes from its last checkpoint.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import (  # noqa: E402
    build_evaluators, build_trainer, default_argument_parser, default_setup, evaluate,
    export_encoders, load_config, load_model_weights, run_cli, select_device, write_results)
from cosmos.config import instantiate  # noqa: E402
from cosmos.checkpoint import Checkpointer  # noqa: E402

logger = logging.getLogger("cosmos")


def do_eval(cfg, output_dir, checkpoint):
    model = instantiate(cfg.model).to(select_device(cfg.train.get("device", "auto")))
    path = checkpoint or Checkpointer(os.path.join(output_dir, "checkpoints")).latest()
    if path:
        load_model_weights(model, path)
    results = evaluate(model, build_evaluators(cfg))
    write_results(results, os.path.join(output_dir, "eval"), step=0)
    return results


def do_train(cfg, output_dir, resume):
    trainer = build_trainer(cfg, output_dir, resume=resume)
    trainer.train()
    export_encoders(trainer.model, output_dir)
    results = next((h.last_results for h in trainer.hooks if hasattr(h, "last_results")), {})
    if results:
        write_results(results, os.path.join(output_dir, "eval"), trainer.iter)
    return results


def main(args):
    cfg = load_config(args.config_file, args.opts)
    output_dir = default_setup(cfg, args)
    if args.eval_only:
        results = do_eval(cfg, output_dir, args.checkpoint)
    else:
        results = do_train(cfg, output_dir, resume=not args.no_resume)
    if results:
        logger.info("final evaluation:\n%s", "\n".join(f"  {k:40s} {v:6.2f}"
                                                      for k, v in sorted(results.items())))
    logger.info("run directory: %s", os.path.abspath(output_dir))
    return results


if __name__ == "__main__":
    run_cli(main, default_argument_parser().parse_args())
