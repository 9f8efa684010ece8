#!/usr/bin/env python
"""Zero-shot evaluation of a checkpoint, or of an OpenCLIP / official COSMOS model as a baseline,
with the evaluators of a config.

    python tools/eval_net.py --config-file CFG --checkpoint PATH [--encoders student,teacher]
        [--evaluators name,name] [--out DIR] [--eval-config FILE] [key=value ...]
    python tools/eval_net.py --config-file CFG --model openclip:PATH [--arch ViT-B-16] ...
    python tools/eval_net.py --config-file CFG --model official:PATH [--arch ViT-B-16] ...

The config names the evaluators (``evaluation.<name>``; add one with
``+evaluation.coco={_target_: evaluators.retrieval, ...}``) and, with ``--checkpoint``, builds
the model (its ``model`` node). ``--checkpoint PATH`` is a training checkpoint
(``checkpoints/model_NNNNNNN.pth``) or a model state dict (``student.pth`` of a CLIP run); every
encoder of the meta-architecture is evaluated (for COSMOS: ``student`` and ``teacher``) unless
``--encoders`` picks some. ``--model`` evaluates a model trained elsewhere through the same
evaluators and tables: ``openclip:PATH`` is an OpenCLIP local-dir model (its config gives the
architecture) or state-dict file (``--arch`` gives it), evaluated as encoder ``openclip``;
``official:PATH`` is an official COSMOS training checkpoint (``--arch``, default ViT-B-16),
evaluated as ``student`` and ``teacher``. ``--eval-config FILE`` takes the evaluators from
another config (the paper benchmarks: ``configs/common/evaluation/benchmarks.py``); with
``--model`` it may replace ``--config-file``. Results go to ``DIR/results.json`` and
``DIR/results.md`` (default: ``<run dir>/eval_<checkpoint name>``) and are printed.
``--overlays N`` also writes segmentation overlays (image, prediction, ground truth) of the first
N images of every segmentation evaluator to ``DIR/overlays/<encoder>/<evaluator>/seg_NNN.png``.
Lists are comma-separated.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.config import LazyConfig  # noqa: E402
from cosmos.engine.defaults import (  # noqa: E402
    build_evaluators, evaluate, load_config_overrides, run_cli, select_device, write_results)
from cosmos.engine.inference import load_model_for_inference  # noqa: E402
from cosmos.engine.pretrained import MODEL_SCHEMES, split_scheme  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument, comma_list  # noqa: E402
from cosmos.utils.errors import ConfigError  # noqa: E402
from cosmos.utils.logger import setup_logger  # noqa: E402

logger = logging.getLogger("cosmos")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="the model (with --checkpoint) and the evaluators")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="PATH", help="weights of the config's model")
    which.add_argument("--model", metavar="SCHEME:PATH",
                       help="a model trained elsewhere: openclip:PATH or official:PATH")
    p.add_argument("--arch", default=None, metavar="NAME",
                   help="preset of --model (e.g. ViT-B-16); default: an OpenCLIP local-dir's "
                        "config, ViT-B-16 for official:")
    p.add_argument("--encoders", type=comma_list, default=[], metavar="A,B",
                   help="encoders to evaluate (default: all)")
    p.add_argument("--evaluators", type=comma_list, default=[], metavar="A,B",
                   help="names of evaluation.* (default: all)")
    add_out_argument(p, "results directory (default: <run dir>/eval_<checkpoint name>)",
                     old=("--output-dir",))
    p.add_argument("--eval-config", default="", metavar="FILE",
                   help="take `evaluation` from this config instead (e.g. "
                        "configs/common/evaluation/benchmarks.py); overrides apply after")
    p.add_argument("--overlays", type=int, default=0, metavar="N",
                   help="segmentation overlays of the first N images per segmentation evaluator")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    args = p.parse_args(argv)
    if not args.config_file and not (args.model and args.eval_config):
        p.error("--config-file is required (with --model, --eval-config may replace it)")
    if args.arch and not args.model:
        p.error("--arch applies to --model only (--checkpoint takes the config's model)")
    return args


def default_output_dir(checkpoint: str) -> str:
    folder, name = os.path.split(os.path.abspath(checkpoint.rstrip("/")))
    run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
    return os.path.join(run_dir, f"eval_{os.path.splitext(name)[0]}")


def write_overlays(model, evaluators, encoders, count: int, out_dir: str) -> None:
    """Overlays of every segmentation evaluator (those with ``predictions``) per encoder."""
    from cosmos.visualization.segmentation import segmentation_samples

    for enc_name, encoder in model.encoders().items():
        if encoders and enc_name not in encoders:
            continue
        for ev_name, evaluator in evaluators.items():
            if hasattr(evaluator, "predictions"):
                paths = segmentation_samples(encoder, evaluator, count,
                                             os.path.join(out_dir, enc_name, ev_name))
                logger.info("wrote %d overlays to %s", len(paths), os.path.dirname(paths[0]))


def load_evaluation_config(args):
    cfg = LazyConfig.load(args.config_file or args.eval_config)
    if args.eval_config:
        cfg.evaluation = LazyConfig.load(args.eval_config).evaluation
    return load_config_overrides(cfg, args.opts)


def main(args):
    setup_logger()
    cfg = load_evaluation_config(args)
    evaluators = build_evaluators(cfg)
    if args.evaluators:
        unknown = [e for e in args.evaluators if e not in evaluators]
        if unknown:
            raise ConfigError(f"unknown evaluator(s) {unknown}; the config has "
                              f"{sorted(evaluators)}")
        evaluators = {name: evaluators[name] for name in args.evaluators}
    if not evaluators:
        raise ConfigError("the config has no evaluators; add one with +evaluation.NAME={...}")
    device = select_device((cfg.get("train") or {}).get("device", "auto"))
    if args.model:
        split_scheme(args.model, MODEL_SCHEMES, "--model")  # a plain path is an error here
    loaded = load_model_for_inference(args.model or args.checkpoint, cfg, arch=args.arch,
                                      device=device)
    model = loaded.model
    encoders = args.encoders or None
    results = evaluate(model, evaluators, encoders)
    out = args.out or default_output_dir(loaded.checkpoint)
    write_results(results, out, loaded.step)
    if args.overlays > 0:
        write_overlays(model, evaluators, encoders, args.overlays, os.path.join(out, "overlays"))
    print("\n".join(f"{k:45s} {v:6.2f}" for k, v in sorted(results.items())))
    logger.info("results written to %s", os.path.join(out, "results.json"))
    return results


if __name__ == "__main__":
    run_cli(main, parse_args())
