"""Reading tar members from a seekable file or a one-way stream, with integrity checks.

Python's ``tarfile`` ends an archive silently at the first header it cannot use: a zero block,
a short read, or garbage. A shard cut at a member boundary, or in the zero padding after a
member, then reads as a complete, shorter shard. :func:`scan_members` reads the headers itself
(each block parsed by ``tarfile.TarInfo.frombuf``, which checks the checksum) and requires what
POSIX requires of a complete archive: every member's stated size present, then an
end-of-archive marker of two zero blocks. Whatever the bytes at the cut, a shorter file fails
one of these checks; :class:`TarIntegrityError` says which and where.

Handled member types: regular files (``0``, ``\\0``, ``7``), GNU long names (``L``, ``K``) and
pax headers (``x``: ``path`` and ``size``; ``g`` is skipped). Other types (directories, links)
are skipped.
"""
from __future__ import annotations

import tarfile
from typing import Callable, Iterator, NamedTuple, Optional

__all__ = ["TarIntegrityError", "TarMember", "scan_members", "BLOCK"]

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class TarIntegrityError(Exception):
    """The archive is cut short or damaged; ``members`` members before it were complete."""

    def __init__(self, detail: str, members: int) -> None:
        super().__init__(detail)
        self.detail, self.members = detail, members


class TarMember(NamedTuple):
    name: str
    offset: int  # of the data, from the start of the archive
    size: int
    data: Optional[bytes]  # the bytes when read (streams); None when only indexed


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _pax_fields(data: bytes) -> dict:
    """``b"27 path=some/long/name.jpg\\n..."`` → ``{"path": ..., "size": ...}``."""
    fields, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        fields[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return fields


def scan_members(read: Callable[[int], bytes], skip: Optional[Callable[[int], int]] = None,
                 ) -> Iterator[TarMember]:
    """The regular-file members of a tar, in order; raises :class:`TarIntegrityError` at the end
    when the archive is not complete.

    ``read(n)`` returns up to ``n`` bytes (fewer only at the end of the data). With ``skip(n)``
    (advance ``n`` bytes, return how many were available: a seek on a file) the data is not
    read and ``TarMember.data`` is None; without it each member's bytes are read.
    """
    pos, count = 0, 0
    long_name: Optional[str] = None
    pax: dict = {}
    while True:
        block = read(BLOCK)
        at = pos
        pos += len(block)
        if len(block) < BLOCK:
            what = "ends" if not block else f"ends {len(block)} bytes into a header"
            raise TarIntegrityError(f"{what} at byte {at} without the end-of-archive marker "
                                    f"(after {count} members)", count)
        if block == _ZERO_BLOCK:
            second = read(BLOCK)
            if second != _ZERO_BLOCK:
                raise TarIntegrityError(
                    f"the end-of-archive marker at byte {at} is "
                    f"{'incomplete' if len(second) < BLOCK else 'followed by data'}", count)
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise TarIntegrityError(f"bad tar header at byte {at} ({e})", count) from None
        try:
            size = int(pax.get("size", info.size)) if info.type in _FILE_TYPES else info.size
        except ValueError:
            raise TarIntegrityError(f"bad pax size {pax.get('size')!r} at byte {at}",
                                    count) from None
        stored = _padded(size)
        data: Optional[bytes] = None
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE) or \
                (info.type in _FILE_TYPES and skip is None):
            data = read(stored)
            got = len(data)
            data = data[:size]
        else:
            got = skip(stored) if skip is not None else len(read(stored))
        pos += got
        if got < size:
            raise TarIntegrityError(
                f"member {long_name or pax.get('path') or info.name} is cut: {size - got} of "
                f"its {size} bytes missing (the archive ends at byte {pos})", count)
        if info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            continue
        if info.type == tarfile.XHDTYPE:
            pax = _pax_fields(data)
            continue
        if info.type in (tarfile.GNUTYPE_LONGLINK, tarfile.XGLTYPE):
            continue
        name = long_name or pax.get("path") or info.name
        long_name, pax = None, {}
        if info.type in _FILE_TYPES and not name.endswith("/"):
            count += 1
            yield TarMember(name, pos - got, size, data)
