#!/usr/bin/env python
"""Write webdataset shards (img2dataset layout) from the synthetic scenes or an image folder.

    python tools/make_shards.py synthetic --num-samples 20000 --out data/synth [--presplit]
    python tools/make_shards.py folder --images DIR --csv captions.csv --out data/mine \\
        [--caption-column title] [--extra-caption-columns shortIB_captions,longIB_captions]

Output: ``{out}/{prefix}-000000.tar ...`` and ``{out}/{prefix}-index.json``. Errors print one
line ``error: ...`` and exit with code 2 (``COSMOS_TRACEBACK=1`` shows the traceback).
"""
import argparse
import os
import sys
from collections import Counter
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.data.shard_writer import folder_samples, synthetic_samples, write_shards  # noqa: E402
from cosmos.utils.errors import CosmosError, DataError  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, like every other user error
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--out", required=True, metavar="DIR", help="output directory")
    common.add_argument("--prefix", default="shard", help="shard name prefix (default: shard)")
    common.add_argument("--samples-per-shard", type=int, default=5000, metavar="N")
    common.add_argument("--presplit", action="store_true",
                        help="store caption fields (except raw_caption) as sentence lists")
    common.add_argument("--overwrite", action="store_true",
                        help="replace existing shards with the same prefix")

    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True, metavar="{synthetic,folder}")
    syn = sub.add_parser("synthetic", parents=[common], help="procedural scenes")
    syn.add_argument("--num-samples", type=int, default=2000)
    syn.add_argument("--image-size", type=int, default=64)
    syn.add_argument("--split", default="train")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--image-format", choices=("png", "jpg"), default="png")

    fol = sub.add_parser("folder", parents=[common], help="image files plus a caption table")
    fol.add_argument("--images", required=True, metavar="DIR", help="root of the image paths")
    src = fol.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="CSV/TSV with a header row")
    src.add_argument("--json", metavar="FILE", help="JSON {image: caption} or JSON lines")
    fol.add_argument("--sep", help="field separator (default: tab for .tsv, else comma)")
    fol.add_argument("--image-column", default="filepath")
    fol.add_argument("--caption-column", default="title")
    fol.add_argument("--extra-caption-columns", default="", metavar="A,B,...",
                     help="more caption columns copied into the json")
    return parser


def _reasons(skipped: Counter) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    skipped: Counter = Counter()
    if args.source == "synthetic":
        from cosmos.data.synthetic import SyntheticScenes
        try:
            dataset = SyntheticScenes(num_samples=args.num_samples, image_size=args.image_size,
                                      split=args.split, seed=args.seed)
        except ValueError as exc:
            raise CosmosError(str(exc)) from None
        samples = synthetic_samples(dataset, presplit=args.presplit, image_format=args.image_format)
        source = repr(dataset)
    else:
        samples = folder_samples(args.images, csv=args.csv, json_file=args.json,
                                 image_column=args.image_column, caption_column=args.caption_column,
                                 extra_caption_columns=args.extra_caption_columns, sep=args.sep,
                                 presplit=args.presplit, skipped=skipped)
        source = f"folder {args.images} captions {args.csv or args.json}"
    try:
        index = write_shards(samples, args.out, args.prefix, args.samples_per_shard,
                             source=source, presplit=args.presplit, overwrite=args.overwrite,
                             progress=lambda line: print(line, flush=True))
    except DataError as exc:
        if not skipped:
            raise
        raise DataError(f"{exc} (skipped: {_reasons(skipped)})") from None
    total = sum(skipped.values())
    print(f"written {index['num_samples']} samples in {len(index['shards'])} shards to "
          f"{args.out}; skipped {total}" + (f" ({_reasons(skipped)})" if total else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CosmosError as exc:
        if os.environ.get("COSMOS_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
