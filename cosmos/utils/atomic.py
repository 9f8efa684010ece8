"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""
from __future__ import annotations

import os
import tempfile
from typing import IO, Callable, Optional


def atomic_write(path: str, write: Callable[[IO[bytes]], None],
                 verify: Optional[Callable[[str], object]] = None) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, optionally
    ``verify(temporary path)`` (an exception leaves ``path`` untouched), then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_text(path: str, text: str, verify: Optional[Callable[[str], object]] = None) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), verify)
