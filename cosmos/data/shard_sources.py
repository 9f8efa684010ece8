"""Where shard bytes come from: local files (seekable), HTTP(S) and ``pipe:`` streams, iopath URIs.

* a local path or ``file://`` URL: opened as a seekable file (the reader indexes it);
* ``http://`` / ``https://``: streamed with ``urllib`` (no download to disk);
* ``pipe:CMD``: the standard output of a shell command, e.g. ``pipe:curl -sfL https://…/0001.tar``
  or ``pipe:aws s3 cp s3://bucket/0001.tar -`` (the OpenCLIP / webdataset convention);
* any other ``scheme://`` URI: streamed through the project's iopath ``PathManager``
  (``PathManager.open(url, "rb")``) with the handlers registered in :mod:`cosmos.utils.file_io`.

Streams are read once, front to back. A failure is an ``OSError`` whose message names the URL.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO, Dict, List, Optional, Sequence

from cosmos.utils.errors import ConfigError, DataError
from cosmos.utils.file_io import PathManager

__all__ = ["is_local", "local_path", "ShardByteStream", "open_stream", "check_sources",
           "index_counts", "HTTP_TIMEOUT"]

HTTP_TIMEOUT = 60.0  # seconds without a byte before a read fails
PIPE_PREFIX = "pipe:"


def is_local(url: str) -> bool:
    """A path on this machine (``file://`` included): read by seeking."""
    return not url.startswith(PIPE_PREFIX) and ("://" not in url or url.startswith("file://"))


def local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


class ShardByteStream:
    """A one-way byte stream of a shard; ``read(n)`` returns up to ``n`` bytes, ``b""`` at the end.

    ``close()`` ends the transfer; ``finish()`` (at the end of the data) raises ``OSError`` when
    the source reports a failure (a command's non-zero exit status).
    """

    def __init__(self, url: str, raw: BinaryIO, process: Optional[subprocess.Popen] = None,
                 stderr: Optional[BinaryIO] = None) -> None:
        self.url, self.raw, self.process, self.stderr = url, raw, process, stderr

    def read(self, n: int) -> bytes:
        chunks, want = [], n
        while want > 0:
            try:
                chunk = self.raw.read(want)
            except Exception as e:  # http.client.IncompleteRead, socket timeouts, ...
                raise OSError(f"{self.url}: read failed: {type(e).__name__}: {e}") from None
            if not chunk:
                remaining = getattr(self.raw, "length", None)  # http.client: announced, unread
                if remaining:
                    raise OSError(f"{self.url}: the connection closed with {remaining} of the "
                                  f"announced bytes not sent")
                break
            chunks.append(chunk)
            want -= len(chunk)
        return b"".join(chunks)

    def _stderr_tail(self) -> str:
        """The command's last line on stderr, as ``": line"`` (or "")."""
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(max(self.stderr.seek(0, os.SEEK_END) - 2000, 0))
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return f": {lines[-1].strip()}" if lines else ""

    def finish(self) -> None:
        """At the end of the tar: read what follows (record padding), then check the exit."""
        if self.process is None:
            return
        while self.read(1 << 16):
            pass
        status = self.process.wait()
        if status != 0:
            raise OSError(f"{self.url}: command exited with status {status}{self._stderr_tail()}")

    def failure(self) -> Optional[str]:
        """After a broken tar: the command's failure, if it failed (not merely cut off by us)."""
        if self.process is None:
            return None
        self.raw.close()
        status = self.process.wait()
        if status in (0, -signal.SIGPIPE, 128 + signal.SIGPIPE):
            return None
        return f"{self.url}: command exited with status {status}{self._stderr_tail()}"

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.kill()
                self.process.wait()
            if self.stderr is not None:
                self.stderr.close()


def open_stream(url: str) -> ShardByteStream:
    """Start reading ``url`` (http(s), ``pipe:``, an iopath URI). Raises ``OSError`` naming it."""
    if _is_http(url):
        try:
            response = urllib.request.urlopen(url, timeout=HTTP_TIMEOUT)
        except urllib.error.HTTPError as e:
            raise OSError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise OSError(f"{url}: {reason}") from None
        return ShardByteStream(url, response)
    if url.startswith(PIPE_PREFIX):
        stderr = tempfile.TemporaryFile()  # no name on disk: nothing to clean up
        try:
            process = subprocess.Popen(url[len(PIPE_PREFIX):], shell=True, stdout=subprocess.PIPE,
                                       stderr=stderr, stdin=subprocess.DEVNULL, bufsize=1 << 20)
        except BaseException:
            stderr.close()
            raise
        return ShardByteStream(url, process.stdout, process, stderr)
    try:
        return ShardByteStream(url, PathManager.open(url, "rb"))
    except Exception as e:  # iopath handlers raise their own types
        raise OSError(f"{url}: {type(e).__name__}: {e}") from None


# Shell builtins and keywords a command line may start with (not programs on PATH).
_SHELL_WORDS = frozenset({"exec", "eval", "command", "set", "export", "cd", "test", "[", "{",
                          "(", "if", "for", "while", "true", ":", "echo", "printf", "time"})


def _command_name(command: str) -> Optional[str]:
    """The program a shell command line starts (after ``VAR=value`` assignments), if simple."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word in words:
        word = word.lstrip("({")  # a subshell or group: look inside
        if not word or ("=" in word.split("/")[0] and not word.startswith(("=", "-"))):
            continue  # an environment assignment
        return word
    return None


def _describe(index: int, count: int, spec: str) -> str:
    return f"shard source {index + 1} of {count} ({spec})"


def check_sources(sources: Sequence[List[str]], specs: Sequence[str],
                  connect_timeout: float = 10.0) -> None:
    """Fail early, with one line naming the source, on what can be known before reading.

    A local source none of whose shards exists, a ``pipe:`` command that is not installed, and
    an HTTP host that does not accept connections are :class:`DataError` s (a missing remote
    shard, a 404 or a failing command are counted per shard while reading).
    """
    hosts: Dict[tuple, str] = {}
    for i, (urls, spec) in enumerate(zip(sources, specs)):
        where = _describe(i, len(sources), spec)
        local = [local_path(u) for u in urls if is_local(u)]
        if local and len(local) == len(urls) and not any(os.path.exists(p) for p in local):
            raise DataError(f"{where}: none of the {len(local)} shards exists: {spec!r} "
                            f"(relative to {os.getcwd()})")
        for url in urls:
            if url.startswith(PIPE_PREFIX):
                program = _command_name(url[len(PIPE_PREFIX):])
                if not program:
                    raise ConfigError(f"{where}: empty or unparsable pipe command in {url!r}")
                found = (program in _SHELL_WORDS
                         or (os.access(program, os.X_OK) if "/" in program
                             else shutil.which(program) is not None))
                if not found:
                    raise DataError(f"{where}: command {program!r} of {url!r} is not installed "
                                    f"(not found on PATH)")
            elif _is_http(url):
                parts = urllib.parse.urlsplit(url)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                hosts.setdefault((parts.hostname, port), where)
    for (host, port), where in hosts.items():
        try:
            socket.create_connection((host, port), timeout=connect_timeout).close()
        except OSError as e:
            raise DataError(f"{where}: cannot reach {host}:{port} "
                            f"({getattr(e, 'strerror', None) or e})") from None


_INDEX_CACHE: Dict[str, Optional[Dict[str, int]]] = {}


def index_counts(url: str) -> Optional[int]:
    """Samples in shard ``url`` according to the ``PREFIX-index.json`` that ``make_shards.py``
    writes beside it (``shards`` and ``sample_counts``); None when there is no such index.

    Looked up for local files and http(s) URLs, once per index per process.
    """
    if not (is_local(url) or _is_http(url)):
        return None
    base = local_path(url)
    head, _, name = base.rpartition("/")
    prefix, dash, number = name.rpartition("-")
    if not dash or not number.endswith(".tar"):
        return None
    index_url = f"{head}/{prefix}-index.json" if head else f"{prefix}-index.json"
    if index_url not in _INDEX_CACHE:
        _INDEX_CACHE[index_url] = _read_index(index_url)
    counts = _INDEX_CACHE[index_url]
    return None if counts is None else counts.get(name)


def _read_index(index_url: str) -> Optional[Dict[str, int]]:
    try:
        if _is_http(index_url):
            with urllib.request.urlopen(index_url, timeout=HTTP_TIMEOUT) as response:
                text = response.read(1 << 24)
        else:
            if not os.path.exists(index_url):
                return None
            with open(index_url, "rb") as f:
                text = f.read(1 << 24)
        index = json.loads(text)
        return {str(n): int(c) for n, c in zip(index["shards"], index["sample_counts"])}
    except Exception:  # no index, or not ours: nothing to compare with
        return None
