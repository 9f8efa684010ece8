#!/usr/bin/env python
"""Export a trained encoder as an OpenCLIP model directory.

    python tools/export.py RUN_OR_CHECKPOINT [--encoder student|teacher] --out DIR
        [--config-file FILE] [--overwrite] [key=value ...]

``RUN_OR_CHECKPOINT``: a run directory (its final ``student.pth`` / ``teacher.pth``, else its
last checkpoint), a training checkpoint ``<run>/checkpoints/model_NNNNNNN.pth`` or an exported
``student.pth``; the config is the run's ``config.yaml`` unless ``--config-file`` gives one.
``DIR`` receives ``open_clip_config.json`` (model and preprocessing config),
``open_clip_model.safetensors`` and ``open_clip_pytorch_model.bin`` (the same OpenCLIP state
dict), so that

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:DIR")
    model = open_clip.create_model("ViT-B-16", pretrained="DIR/open_clip_pytorch_model.bin")

load it (the second form for runs with a built-in OpenCLIP architecture). The declared
preprocessing is the evaluation transform of the run's config. Towers other than the toolkit's
ViT and text transformer (e.g. ``backbones.timm_vit``) have no OpenCLIP config and are refused.
Nothing is written unless the export succeeds (a temporary directory is renamed at the end).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import run_cli  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--encoder", default=None, choices=("student", "teacher"),
                   help="default: student (teacher for an exported teacher.pth)")
    add_out_argument(p, "the OpenCLIP model directory to write", required=True)
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="default: config.yaml of the run directory")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    p.add_argument("opts", nargs="*", metavar="key=value", help="config overrides")
    return p.parse_intermixed_args(argv)


def main(args: argparse.Namespace):
    from cosmos.engine.export import export_openclip_run

    result = export_openclip_run(args.source, args.out, encoder=args.encoder,
                                 config_file=args.config_file, opts=args.opts,
                                 overwrite=args.overwrite)
    vision = result["model_cfg"]["vision_cfg"]
    print(f"exported the {result['encoder']} of {result['source']} to {os.path.abspath(args.out)}")
    print(f"  OpenCLIP model: ViT {vision['image_size']} px / patch {vision['patch_size']}, "
          f"width {vision['width']}, {vision['layers']} layers, embed_dim "
          f"{result['model_cfg']['embed_dim']}, quick_gelu {result['model_cfg']['quick_gelu']}")
    print(f"  preprocess: {json.dumps(result['preprocess_cfg'])}")
    print(f"  load: open_clip.create_model_and_transforms('local-dir:{os.path.abspath(args.out)}')")
    return result


if __name__ == "__main__":
    run_cli(main, parse_args())
