#!/usr/bin/env python
"""Zero-shot evaluation of a checkpoint with the evaluators of a config.

    python tools/eval_net.py --config-file CFG --checkpoint PATH [--encoders student,teacher]
        [--evaluators name,name] [--output-dir DIR] [key=value ...]

The config builds the model (its ``model`` node) and names the evaluators (``evaluation.<name>``;
add one with ``+evaluation.coco={_target_: evaluators.retrieval, ...}``). ``PATH`` is a training
checkpoint (``checkpoints/model_NNNNNNN.pth``) or a model state dict (``student.pth`` of a CLIP
run). Every encoder of the meta-architecture is evaluated (for COSMOS: ``student`` and
``teacher``) unless ``--encoders`` picks some. ``--eval-config FILE`` takes the evaluators from
another config (the paper benchmarks: ``configs/common/evaluation/benchmarks.py``). Results go to ``DIR/results.json`` and
``DIR/results.md`` (default: ``<run dir>/eval_<checkpoint name>``) and are printed.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.checkpoint import load_checkpoint  # noqa: E402
from cosmos.config import LazyConfig, instantiate  # noqa: E402
from cosmos.engine.defaults import (  # noqa: E402
    build_evaluators, evaluate, load_config_overrides, load_model_weights, run_cli,
    select_device, write_results)
from cosmos.utils.errors import ConfigError  # noqa: E402
from cosmos.utils.logger import setup_logger  # noqa: E402

logger = logging.getLogger("cosmos")


def parse_args(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--checkpoint", required=True, metavar="PATH")
    p.add_argument("--encoders", default="", help="comma-separated (default: all)")
    p.add_argument("--evaluators", default="", help="comma-separated names of evaluation.* (default: all)")
    p.add_argument("--output-dir", default="", metavar="DIR")
    p.add_argument("--eval-config", default="", metavar="FILE",
                   help="take `evaluation` from this config instead (e.g. "
                        "configs/common/evaluation/benchmarks.py); overrides apply after")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return p.parse_args(argv)


def default_output_dir(checkpoint: str) -> str:
    folder, name = os.path.split(os.path.abspath(checkpoint))
    run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
    return os.path.join(run_dir, f"eval_{os.path.splitext(name)[0]}")


def main(args):
    setup_logger()
    cfg = LazyConfig.load(args.config_file)
    if args.eval_config:
        cfg.evaluation = LazyConfig.load(args.eval_config).evaluation
    cfg = load_config_overrides(cfg, args.opts)
    evaluators = build_evaluators(cfg)
    if args.evaluators:
        wanted = [e for e in args.evaluators.split(",") if e]
        unknown = [e for e in wanted if e not in evaluators]
        if unknown:
            raise ConfigError(f"unknown evaluator(s) {unknown}; the config has {sorted(evaluators)}")
        evaluators = {name: evaluators[name] for name in wanted}
    if not evaluators:
        raise ConfigError("the config has no evaluators; add one with +evaluation.NAME={...}")
    model = instantiate(cfg.model).to(select_device(cfg.train.get("device", "auto")))
    state = load_checkpoint(args.checkpoint)
    load_model_weights(model, args.checkpoint, state)
    step = int(state.get("iter", 0)) if isinstance(state, dict) else 0
    encoders = [e for e in args.encoders.split(",") if e] or None
    results = evaluate(model, evaluators, encoders)
    out = args.output_dir or default_output_dir(args.checkpoint)
    write_results(results, out, step)
    print("\n".join(f"{k:45s} {v:6.2f}" for k, v in sorted(results.items())))
    logger.info("results written to %s", os.path.join(out, "results.json"))
    return results


if __name__ == "__main__":
    run_cli(main, parse_args())
