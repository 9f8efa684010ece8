#!/usr/bin/env python
"""Print every registry and the components registered in it (name → implementation)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cosmos.registry import REGISTRIES, load_builtins  # noqa: E402


def main() -> None:
    load_builtins()
    for name, registry in REGISTRIES.items():
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
    main()
