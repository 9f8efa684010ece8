"""Command-line habits shared by every tool in ``tools/``.

- :class:`ArgumentParser`: a usage error is one line ``error: <prog>: <message> (see --help)``
  on stderr with exit code 2, like every other user error of the toolkit.
- Output locations are spelled ``--out``; :func:`add_out_argument` also accepts an old spelling
  as a hidden alias that prints one deprecation line.
- Lists are comma-separated (``--encoders student,teacher``): :func:`comma_list`.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, List, Optional, Sequence


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line with exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extra = super().parse_known_args(args, namespace)
        _give_back_override(namespace)
        return namespace, extra


_OVERRIDE = re.compile(r"^\+?[A-Za-z_][\w.]*=")


def _give_back_override(namespace: argparse.Namespace) -> None:
    """``--resume key=value``: the optional value of ``--resume`` swallowed a config override;
    it means ``--resume latest`` followed by that override."""
    value = getattr(namespace, "resume", None)
    if (isinstance(value, str) and isinstance(getattr(namespace, "opts", None), list)
            and _OVERRIDE.match(value) and not os.path.isfile(value)):
        namespace.opts.insert(0, value)
        namespace.resume = "latest"


def comma_list(value: str) -> List[str]:
    """``"a,b, c"`` → ``["a", "b", "c"]`` (the one list convention of the tools)."""
    return [item.strip() for item in value.split(",") if item.strip()]


class _DeprecatedAlias(argparse.Action):
    """Stores into ``dest`` like the new spelling, after one line naming the new spelling."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "--out",
                 **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string: Optional[str] = None) -> None:
        print(f"note: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_out_argument(parser: argparse.ArgumentParser, help: str, default: Any = "",
                     metavar: str = "DIR", required: bool = False,
                     old: Sequence[str] = ()) -> None:
    """``--out`` (the output location of every tool), plus hidden deprecated spellings ``old``."""
    parser.add_argument("--out", default=default, metavar=metavar, required=required, help=help)
    for spelling in old:
        parser.add_argument(spelling, dest="out", action=_DeprecatedAlias, metavar=metavar,
                            help=argparse.SUPPRESS)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume [latest|PATH]`` and ``--no-resume`` (mutually exclusive).

    Without either a run continues from its run directory's last checkpoint when there is one
    and starts fresh otherwise. ``--resume`` (= ``--resume latest``) requires that checkpoint;
    ``--resume PATH`` starts from the training checkpoint PATH when the run directory has none
    yet (afterwards the run's own checkpoints win, so a restarted job does not go back);
    ``--no-resume`` starts fresh and refuses a run directory that holds checkpoints.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", nargs="?", const="latest", default=None,
                       metavar="latest|PATH",
                       help="require a checkpoint to continue from: the run directory's last "
                            "(latest, the default value) or the training checkpoint PATH; "
                            "without --resume / --no-resume a run continues when it can")
    group.add_argument("--no-resume", action="store_true",
                       help="start from scratch; refused if the run directory has checkpoints")
