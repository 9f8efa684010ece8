#!/usr/bin/env python
"""Print every registry and the components registered in it (name → implementation).

    python tools/list_components.py [--registry NAME[,NAME]]

A config node names a registered component by ``<registry>.<name>``, e.g.
``model.loss._target_=losses.clip_infonce``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.engine.defaults import run_cli  # noqa: E402
from cosmos.registry import REGISTRIES, load_builtins  # noqa: E402
from cosmos.utils.cli import ArgumentParser, comma_list  # noqa: E402
from cosmos.utils.errors import ConfigError  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--registry", type=comma_list, default=[], metavar="NAME[,NAME]",
                   help="only these registries (default: all)")
    return p.parse_args(argv)


def main(args) -> None:
    load_builtins()
    unknown = [r for r in args.registry if r not in REGISTRIES]
    if unknown:
        raise ConfigError(f"unknown registry {unknown}; known: {', '.join(REGISTRIES)}")
    for name, registry in REGISTRIES.items():
        if args.registry and name not in args.registry:
            continue
        print(f"{name}  ({registry.description})")
        entries = registry.items()
        if not entries:
            print("    (none yet)")
        for entry, obj in entries:
            doc = (obj.__doc__ or "").strip().splitlines()
            print(f"    {name}.{entry:24s} {obj.__module__}.{obj.__qualname__}"
                  + (f"  — {doc[0]}" if doc else ""))
        print()


if __name__ == "__main__":
    run_cli(main, parse_args())
