"""Image-caption pairs listed in a CSV/TSV table (OpenCLIP's ``--dataset-type csv`` layout).

The table has a header row; one column holds image paths (relative to ``image_root``, which
defaults to the table's directory, or absolute / URIs), one the main caption, and optional
extra columns more captions (e.g. DreamLIP's ``shortIB_captions``); an extra value that parses
as a JSON list is returned as a list. :func:`iter_table` and :func:`parse_caption_value` are
shared with :mod:`cosmos.data.shard_writer`.
"""
from __future__ import annotations

import csv
import io
import json
import operator
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from PIL import Image
from torch.utils.data import Dataset

from cosmos.registry import DATASETS
from cosmos.utils.errors import BadSampleError, DataError
from cosmos.utils.file_io import PathManager

__all__ = ["CsvPairs", "iter_table", "parse_caption_value", "parse_columns", "extra_columns",
           "table_separator", "resolve_path", "load_image"]


def table_separator(path: str, sep: Optional[str] = None) -> str:
    """The field separator: ``sep`` if given (``"\\t"`` spelled out is accepted), else tab for
    ``.tsv``/``.tab`` files and comma otherwise."""
    if sep is not None:
        sep = {"\\t": "\t", "tab": "\t", "comma": ","}.get(sep, sep)
        if len(sep) != 1:
            raise DataError(f"separator must be one character, got {sep!r}")
        return sep
    return "\t" if path.lower().endswith((".tsv", ".tab")) else ","


def parse_columns(columns: Union[str, Sequence[str], None]) -> Tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → ``("a", "b")`` (blanks and repeats dropped)."""
    if columns is None:
        return ()
    items = columns.split(",") if isinstance(columns, str) else list(columns)
    out: List[str] = []
    for item in items:
        name = str(item).strip()
        if name and name not in out:
            out.append(name)
    return tuple(out)


def extra_columns(columns: Union[str, Sequence[str], None], caption_column: str,
                  source: str = "") -> Tuple[str, ...]:
    """The extra caption columns to copy, without the main caption column; an extra column
    named ``raw_caption`` when the main caption is another column is a :class:`DataError`."""
    extras = parse_columns(columns)
    if "raw_caption" in extras and caption_column != "raw_caption":
        raise DataError(f"{source + ': ' if source else ''}extra caption column 'raw_caption' "
                        f"clashes with the main caption column {caption_column!r} (stored as "
                        f"raw_caption); make 'raw_caption' the caption column instead")
    return tuple(c for c in extras if c != caption_column)


def iter_table(path: str, columns: Sequence[str], sep: Optional[str] = None
               ) -> Iterator[Tuple[int, Tuple[str, ...]]]:
    """Yield ``(row_index, values of columns)`` for each data row of a CSV/TSV with a header.

    The file is opened and the header checked before this returns, so a missing file or
    column raises :class:`DataError` at once; a row whose field count differs from the
    header's raises it when reached. Blank lines are ignored and do not count as rows.
    """
    if not PathManager.exists(path):
        raise DataError(f"caption table not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))  # long recaptions exceed the default
    f = PathManager.open(path, "r", encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(f, delimiter=table_separator(path, sep))
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty table (no header row)")
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r}; available columns: "
                            f"{', '.join(header)}")
    except BaseException:
        f.close()
        raise
    where = [header.index(c) for c in columns]
    return _rows(f, reader, header, where, path)


def _rows(f: io.TextIOBase, reader: Any, header: List[str], where: List[int], path: str
          ) -> Iterator[Tuple[int, Tuple[str, ...]]]:
    with f:
        index = 0
        for row in reader:
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, "
                                f"the header has {len(header)}")
            yield index, tuple(row[i] for i in where)
            index += 1


def parse_caption_value(value: Any) -> Any:
    """A table cell → its caption value: a string that parses as a JSON list becomes the list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                return value
            if isinstance(parsed, list):
                return parsed
    return value


def resolve_path(root: Optional[str], path: str) -> str:
    """``path`` if absolute or a URI, else ``root/path``."""
    if not root or os.path.isabs(path) or "://" in path:
        return path
    return os.path.join(root, path)


def load_image(path: str) -> Image.Image:
    """Open an image as RGB through the PathManager; failures raise :class:`BadSampleError`
    (``missing_image`` or ``corrupt_image``)."""
    try:
        with PathManager.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise BadSampleError("missing_image", path) from exc
    except OSError as exc:
        raise BadSampleError("missing_image", f"{path} ({exc})") from exc
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except Exception as exc:  # PIL raises many types on bad bytes
        raise BadSampleError("corrupt_image", f"{path} ({type(exc).__name__})") from exc


@DATASETS.register(name="csv_pairs")
class CsvPairs(Dataset):
    """Map-style dataset of the image-caption rows of a CSV/TSV table.

    Item ``i`` is ``{"image": PIL RGB, "captions": {"raw_caption": str, **extras}, "key":
    f"{i:09d}"}``. A missing or undecodable image or an empty caption raises
    :class:`BadSampleError` (``missing_image``, ``corrupt_image``, ``empty_caption``).
    """

    def __init__(self, path: str, image_root: Optional[str] = None,
                 image_column: str = "filepath", caption_column: str = "title",
                 sep: Optional[str] = None,
                 extra_caption_columns: Union[str, Sequence[str]] = ()) -> None:
        self.path = str(path)
        self.image_root = os.path.dirname(self.path) if image_root is None else str(image_root)
        self.image_column = image_column
        self.caption_column = caption_column
        extras = extra_columns(extra_caption_columns, caption_column, self.path)
        self.extra_caption_columns = extras
        columns = (image_column, caption_column) + extras
        self._rows: List[Tuple[str, ...]] = [values for _, values in
                                             iter_table(self.path, columns, sep)]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        i = operator.index(index)
        if i < 0:
            i += len(self._rows)
        if not 0 <= i < len(self._rows):
            raise IndexError(f"index {index} out of range for {len(self._rows)} rows")
        image_path, caption, *extra_values = self._rows[i]
        if not caption.strip():
            raise BadSampleError("empty_caption", f"{self.path} row {i}")
        image = load_image(resolve_path(self.image_root, image_path))
        captions: Dict[str, Any] = {"raw_caption": caption}
        for name, value in zip(self.extra_caption_columns, extra_values):
            captions[name] = parse_caption_value(value)
        return {"image": image, "captions": captions, "key": f"{i:09d}"}

    def __repr__(self) -> str:
        return (f"CsvPairs({self.path!r}, {len(self)} rows, image_root={self.image_root!r}, "
                f"image_column={self.image_column!r}, caption_column={self.caption_column!r})")
