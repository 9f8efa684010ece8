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


class AtomicFile:
    """A binary file written under a hidden temporary name beside ``path``
    (``.{name}.XXXX.tmp``); :meth:`commit` fsyncs it and renames it over ``path``, :meth:`abort`
    removes it. For writes spread over many calls (a shard filled sample by sample); one
    callback's write is :func:`atomic_write`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                        dir=self.directory)
        try:
            os.fchmod(fd, _default_mode())
            self.file: IO[bytes] = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.remove(self.tmp)
            raise

    def commit(self, verify: Optional[Callable[[str], object]] = None) -> None:
        """Flush, fsync and close; ``verify(temporary path)`` (an exception removes the
        temporary file and leaves ``path`` untouched); rename over ``path``; fsync the folder."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if verify is not None:
                verify(self.tmp)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        try:  # make the rename itself durable
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

    def abort(self) -> None:
        """Close and remove the temporary file; ``path`` is left as it was."""
        self.file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def atomic_write(path: str, write: Callable[[IO[bytes]], None],
                 verify: Optional[Callable[[str], object]] = None) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, optionally
    ``verify(temporary path)`` (an exception leaves ``path`` untouched), then rename over
    ``path``."""
    out = AtomicFile(path)
    try:
        write(out.file)
    except BaseException:
        out.abort()
        raise
    out.commit(verify)


def atomic_write_text(path: str, text: str,
                      verify: Optional[Callable[[str], object]] = None) -> None:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), verify)
