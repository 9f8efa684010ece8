#!/usr/bin/env python
"""Show which image patches and caption words the COSMOS cross-attention looks at.

    python tools/visualize_attention.py --checkpoint CKPT --image IMG --caption "TEXT"
        [--config-file CFG] [--out DIR] [--encoder student|teacher] [--heads mean|all]
        [--prefix attention] [--arch ViT-B-16] [--device auto] [key=value ...]

``CKPT``: a training checkpoint (``<run>/checkpoints/model_NNNNNNN.pth``), a run directory (its
latest checkpoint), an exported ``student.pth`` / ``teacher.pth``, an official COSMOS checkpoint
(preset ``--arch``), or ``openclip:PATH``. The config defaults to the run's ``config.yaml``.
Text→image cross-attention (the caption's embedding over the patches) is drawn over the image;
image→text cross-attention (the image's embedding over the caption tokens) colours the words.
Models without trained cross poolers (CLIP, an exported encoder) show the towers' last-layer
attention instead (class token / EOT token), and say so.

Writes ``DIR/attention.png`` (everything), ``attention_image.png``, ``attention_words.png``,
``attention_heads.png`` (``--heads all``) and ``attention.json`` (the normalised weights);
``DIR`` defaults to ``<run dir>/attention_<checkpoint name>``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import run_cli  # noqa: E402
from cosmos.engine.inference import load_model_for_inference  # noqa: E402
from cosmos.utils.cli import ArgumentParser, add_out_argument  # noqa: E402
from cosmos.visualization.attention import (  # noqa: E402
    HEAD_MODES, default_tokenizer, default_transform, open_image, render_attention)


def parse_args(argv=None):
    import argparse
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--checkpoint", required=True, metavar="PATH")
    p.add_argument("--image", required=True, metavar="FILE")
    p.add_argument("--caption", required=True, metavar="TEXT")
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="default: config.yaml of the checkpoint's run directory")
    add_out_argument(p, "where the figures go (default: <run dir>/attention_<checkpoint name>)",
                     old=("--output-dir",))
    p.add_argument("--encoder", default=None, choices=["student", "teacher"],
                   help="default: student (teacher for an exported teacher.pth)")
    p.add_argument("--heads", default="mean", choices=HEAD_MODES,
                   help="mean over heads, or also each head (attention_heads.png)")
    p.add_argument("--prefix", default="attention", help="file name prefix")
    p.add_argument("--arch", default="ViT-B-16", help="preset of an official COSMOS checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    return p.parse_args(argv)


def default_output_dir(checkpoint: str) -> str:
    folder, name = os.path.split(os.path.abspath(checkpoint))
    run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
    return os.path.join(run_dir, f"attention_{os.path.splitext(name)[0]}")


def main(args):
    image = open_image(args.image)  # a bad image fails before the model is built
    loaded = load_model_for_inference(args.checkpoint, args.config_file or None, args.opts,
                                      which=args.encoder, arch=args.arch, device=args.device)
    model, cfg = loaded.model, loaded.cfg
    result = render_attention(model, image, args.caption,
                              args.out or default_output_dir(loaded.checkpoint),
                              tokenizer=default_tokenizer(cfg, model),
                              transform=default_transform(cfg, model), encoder=loaded.which,
                              prefix=args.prefix, heads=args.heads)
    if result["source"] != "cross_attention":
        print(f"no cross-attention ({result['note']}): showing the towers' last-layer attention")
    top = sorted(result["words"], key=lambda w: -w["weight"])[:5]
    print("most attended words: " + ", ".join(f"{w['word']} {w['weight']:.2f}" for w in top))
    for name, path in result["files"].items():
        print(f"{name:7s} {path}")
    return result


if __name__ == "__main__":
    run_cli(main, parse_args())
