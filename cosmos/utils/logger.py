"""Logging: console on rank 0, ``log.txt`` (rank 0) or ``log.txt.rankN`` in the run directory."""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def setup_logger(output_dir: Optional[str] = None, rank: int = 0, name: str = "cosmos",
                 level: int = logging.INFO) -> logging.Logger:
    """Configure the ``cosmos`` logger once per (output_dir, rank); safe to call repeatedly."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    wanted = set()
    if rank == 0:
        wanted.add(("stream", "stdout"))
    if output_dir:
        filename = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}")
        wanted.add(("file", os.path.abspath(filename)))
    existing = {getattr(h, "_cosmos_id", None) for h in logger.handlers}
    for kind, target in sorted(wanted - existing):
        handler = (logging.StreamHandler(sys.stdout) if kind == "stream"
                   else logging.FileHandler(target, mode="a"))
        handler._cosmos_id = (kind, target)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger
