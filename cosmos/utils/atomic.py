"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""
from __future__ import annotations

import os
import tempfile
from typing import IO, Callable, Optional


def _default_mode() -> int:
    """The permissions ``open()`` would give a new file (0666 minus the umask); mkstemp uses 0600,
    which would hide checkpoints and plots from the rest of a project group."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str, write: Callable[[IO[bytes]], None],
                 verify: Optional[Callable[[str], object]] = None) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, optionally
    ``verify(temporary path)`` (an exception leaves ``path`` untouched), then rename over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, _default_mode())
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
