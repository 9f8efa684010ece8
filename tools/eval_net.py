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
``--overlays N`` also writes segmentation overlays (image, prediction, ground truth) of the first
N images of every segmentation evaluator to ``DIR/overlays/<encoder>/<evaluator>/seg_NNN.png``.
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
    p.add_argument("--overlays", type=int, default=0, metavar="N",
                   help="segmentation overlays of the first N images per segmentation evaluator")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return p.parse_args(argv)


def default_output_dir(checkpoint: str) -> str:
    folder, name = os.path.split(os.path.abspath(checkpoint))
    run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
    return os.path.join(run_dir, f"eval_{os.path.splitext(name)[0]}")


def write_overlays(model, evaluators, encoders, count: int, out_dir: str) -> None:
    """Overlays of every segmentation evaluator (those with ``predictions``) per encoder."""
    from cosmos.visualization.segmentation import segmentation_samples

    available = model.encoders() if hasattr(model, "encoders") else {"model": model}
    for enc_name, encoder in available.items():
        if encoders and enc_name not in encoders:
            continue
        for ev_name, evaluator in evaluators.items():
            if hasattr(evaluator, "predictions"):
                paths = segmentation_samples(encoder, evaluator, count,
                                             os.path.join(out_dir, enc_name, ev_name))
                logger.info("wrote %d overlays to %s", len(paths), os.path.dirname(paths[0]))


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
    if args.overlays > 0:
        write_overlays(model, evaluators, encoders, args.overlays, os.path.join(out, "overlays"))
    print("\n".join(f"{k:45s} {v:6.2f}" for k, v in sorted(results.items())))
    logger.info("results written to %s", os.path.join(out, "results.json"))
    return results


if __name__ == "__main__":
    run_cli(main, parse_args())
