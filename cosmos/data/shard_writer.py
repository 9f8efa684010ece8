"""Write image-caption samples as webdataset shards (the img2dataset layout).

A shard is a POSIX tar ``{out_dir}/{prefix}-{index:06d}.tar``; each sample is consecutive
members sharing a key (no dots): ``{key}.{jpg|jpeg|png|webp}`` image bytes, ``{key}.txt`` the
raw caption (UTF-8) and ``{key}.json`` a UTF-8 JSON dict of captions and metadata. Members are
written in order with mtime 0, uid/gid 0 and mode 0o644, so the same input gives byte-identical
shards. Each shard is written under a hidden temporary name and renamed into place when
complete; ``{prefix}-index.json`` (written last, atomically) lists the shards and their counts.

A *sample* here is a dict ``{"__key__": str, ext: bytes | str | dict, ...}``: bytes are written
as they are, strings as UTF-8, dicts and lists as JSON. :func:`synthetic_samples` and
:func:`folder_samples` produce them; :func:`write_shards` writes any iterable of them.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from collections import Counter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from PIL import Image

from cosmos.data.csv_dataset import (
    extra_columns, iter_table, parse_caption_value, resolve_path,
)
from cosmos.data.text_crops import split_caption, to_sentences
from cosmos.utils.atomic import AtomicFile, atomic_write_text
from cosmos.utils.errors import DataError
from cosmos.utils.file_io import PathManager

__all__ = ["IMAGE_EXTENSIONS", "shard_name", "index_name", "existing_shards", "write_shards",
           "synthetic_samples", "folder_samples", "presplit_captions", "encode_image"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}
_JPEG_QUALITY = 95


def shard_name(prefix: str, index: int) -> str:
    """``{prefix}-{index:06d}.tar``."""
    return f"{prefix}-{index:06d}.tar"


def index_name(prefix: str) -> str:
    """``{prefix}-index.json``."""
    return f"{prefix}-index.json"


def existing_shards(out_dir: str, prefix: str) -> List[str]:
    """Names of the shards and index of ``prefix`` already in ``out_dir`` (sorted)."""
    if not os.path.isdir(out_dir):
        return []
    pattern = re.compile(re.escape(prefix) + r"-\d{6,}\.tar")
    return sorted(n for n in os.listdir(out_dir)
                  if pattern.fullmatch(n) or n == index_name(prefix))


def _encode(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or "." in key:
        raise DataError(f"sample key must be a non-empty string without dots, got {key!r}")
    return key


class _ShardFile:
    """One shard being written to its temporary name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.out = AtomicFile(path)
        self.tar = tarfile.open(fileobj=self.out.file, mode="w", format=tarfile.PAX_FORMAT)
        self.count = 0
        self.last_key: Optional[str] = None
        self.start = time.perf_counter()

    def add(self, sample: Mapping[str, Any]) -> None:
        key = _check_key(sample.get("__key__"))
        if key == self.last_key:  # consecutive equal keys would merge into one sample
            raise DataError(f"duplicate consecutive sample key {key!r}")
        for ext, value in sample.items():
            if ext == "__key__":
                continue
            if not ext or ext.startswith("."):
                raise DataError(f"sample {key!r}: invalid member extension {ext!r}")
            _add_member(self.tar, f"{key}.{ext}", _encode(value))
        self.last_key = key
        self.count += 1

    def finish(self) -> float:
        """Close, fsync and rename into place; returns the elapsed seconds."""
        self.tar.close()
        self.out.commit()
        return time.perf_counter() - self.start

    def abort(self) -> None:
        try:
            self.tar.close()
        except Exception:
            pass
        self.out.abort()


def write_shards(samples: Iterable[Mapping[str, Any]], out_dir: str, prefix: str = "shard",
                 samples_per_shard: int = 5000, *, source: str = "", presplit: bool = False,
                 overwrite: bool = False,
                 progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Write ``samples`` into shards of ``samples_per_shard`` and return the index dict.

    Refuses (:class:`DataError`, nothing written) when ``out_dir`` already holds shards of
    ``prefix`` unless ``overwrite``; then stale shards of an earlier, longer run are removed.
    Nothing is created before the first sample arrives, so an error raised by the source up
    front leaves no trace; zero samples is a :class:`DataError`. ``progress`` gets one line per
    finished shard.
    """
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) \
            or samples_per_shard < 1:
        raise DataError(f"samples_per_shard must be a positive integer, got {samples_per_shard!r}")
    if not prefix or "/" in prefix or os.sep in prefix or prefix.startswith("."):
        raise DataError(f"invalid shard prefix {prefix!r} (non-empty, no '/', no leading '.')")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"output path exists and is not a directory: {out_dir}")
    old = existing_shards(out_dir, prefix)
    if old and not overwrite:
        raise DataError(f"{out_dir} already contains {len(old)} '{prefix}' shard file(s) "
                        f"(e.g. {old[0]}); pass --overwrite to replace them")
    names: List[str] = []
    counts: List[int] = []
    shard: Optional[_ShardFile] = None
    try:
        for sample in samples:
            if shard is None:
                os.makedirs(out_dir, exist_ok=True)
                shard = _ShardFile(os.path.join(out_dir, shard_name(prefix, len(names))))
            shard.add(sample)
            if shard.count == samples_per_shard:
                _finish(shard, names, counts, progress)
                shard = None
        if shard is not None:
            _finish(shard, names, counts, progress)
            shard = None
    except BaseException:
        if shard is not None:
            shard.abort()
        raise
    if not names:
        raise DataError(f"no samples to write to {out_dir}")
    for name in set(old) - set(names) - {index_name(prefix)}:  # leftovers of a longer run
        os.remove(os.path.join(out_dir, name))
    index = {"shards": names, "num_samples": sum(counts), "samples_per_shard": samples_per_shard,
             "source": source, "presplit": bool(presplit), "sample_counts": counts}
    text = json.dumps(index, indent=1) + "\n"
    atomic_write_text(os.path.join(out_dir, index_name(prefix)), text)
    return index


def _finish(shard: _ShardFile, names: List[str], counts: List[int],
            progress: Optional[Callable[[str], None]]) -> None:
    seconds = shard.finish()
    names.append(os.path.basename(shard.path))
    counts.append(shard.count)
    if progress is not None:
        rate = shard.count / seconds if seconds > 0 else float("inf")
        progress(f"{names[-1]}: {shard.count} samples, {rate:.1f} samples/s")


# ----------------------------------------------------------------------------- sources


def encode_image(image: Image.Image, image_format: str = "png") -> bytes:
    """Encode a PIL image as PNG (lossless) or JPEG (quality 95, no chroma subsampling)."""
    if image_format not in _IMAGE_FORMATS:
        raise DataError(f"image format must be one of {', '.join(_IMAGE_FORMATS)}, "
                        f"got {image_format!r}")
    buf = io.BytesIO()
    image = image.convert("RGB")
    if image_format == "jpg":
        image.save(buf, format="JPEG", quality=_JPEG_QUALITY, subsampling=0)  # 4:4:4
    else:
        image.save(buf, format="PNG")
    return buf.getvalue()


def presplit_captions(captions: Mapping[str, Any], keep: Sequence[str] = ("raw_caption",)
                      ) -> Dict[str, Any]:
    """The offline pre-split: every string (or list of strings) value except the ``keep``
    keys becomes its list of sentences (:func:`cosmos.data.text_crops.split_caption`)."""
    out: Dict[str, Any] = {}
    for name, value in captions.items():
        if name in keep:
            out[name] = value
        elif isinstance(value, str):
            out[name] = split_caption(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[name] = to_sentences(value)
        else:
            out[name] = value
    return out


def synthetic_samples(dataset: Any, presplit: bool = False, image_format: str = "png"
                      ) -> Iterator[Dict[str, Any]]:
    """Samples of a :class:`~cosmos.data.synthetic.SyntheticScenes`-like dataset, in order.

    json = ``{"raw_caption", "short", "long", "label", "objects"}``; ``short``/``long`` are
    one joined string each (sentences joined with a space), or with ``presplit`` their
    sentence lists; txt = the raw caption; key = the item's key.
    """
    if image_format not in _IMAGE_FORMATS:
        raise DataError(f"image format must be one of {', '.join(_IMAGE_FORMATS)}, "
                        f"got {image_format!r}")
    return _synthetic(dataset, presplit, image_format)


def _synthetic(dataset: Any, presplit: bool, image_format: str) -> Iterator[Dict[str, Any]]:
    for i in range(len(dataset)):
        item = dataset[i]
        captions = item["captions"]
        text = {"raw_caption": captions["raw"],
                "short": " ".join(captions["short"]), "long": " ".join(captions["long"])}
        if presplit:
            text = presplit_captions(text)
        meta = dict(text, label=int(item["label"]), objects=item["objects"])
        yield {"__key__": _check_key(item["key"]), image_format: encode_image(item["image"],
                                                                              image_format),
               "txt": captions["raw"], "json": meta}


def folder_samples(images: str, *, csv: Optional[str] = None, json_file: Optional[str] = None,
                   image_column: str = "filepath", caption_column: str = "title",
                   extra_caption_columns: Union[str, Sequence[str]] = (),
                   sep: Optional[str] = None, presplit: bool = False,
                   skipped: Optional[Counter] = None) -> Iterator[Dict[str, Any]]:
    """Samples of image files under ``images`` captioned by a CSV/TSV table or a JSON file.

    ``json_file`` is a dict ``{relative image path: caption string or dict}`` or JSON lines
    (one object per line with ``image_column`` and the caption fields). Keys are the source
    row index (``f"{row:09d}"``, the :class:`~cosmos.data.csv_dataset.CsvPairs` key), image
    bytes are kept as they are, json = ``{"raw_caption": caption, **extras, "source_path"}``.
    Missing, corrupt or unsupported images and empty captions are skipped and counted into
    ``skipped`` by reason. Sources and columns are checked before this returns.
    """
    if (csv is None) == (json_file is None):
        raise DataError("give exactly one caption source: a CSV/TSV table or a JSON file")
    if not os.path.isdir(images) and not PathManager.isdir(images):
        raise DataError(f"image directory not found: {images}")
    source = csv if csv is not None else json_file
    extras = extra_columns(extra_caption_columns, caption_column, source)
    if "source_path" in extras:
        raise DataError(f"{source}: extra caption column 'source_path' is reserved")
    if csv is not None:
        rows: Iterator = iter_table(csv, (image_column, caption_column) + extras, sep)
    else:
        rows = _json_rows(json_file, image_column, caption_column, extras)
    return _folder(images, rows, extras, presplit, skipped if skipped is not None else Counter())


def _folder(images: str, rows: Iterator, extras: Sequence[str], presplit: bool,
            skipped: Counter) -> Iterator[Dict[str, Any]]:
    for row, (path, caption, *values) in rows:
        if not isinstance(caption, str) or not caption.strip():
            skipped["empty_caption"] += 1
            continue
        if not path:
            skipped["missing_image"] += 1
            continue
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext not in IMAGE_EXTENSIONS:
            skipped["unsupported_image_type"] += 1
            continue
        data = _read_image(resolve_path(images, path), skipped)
        if data is None:
            continue
        meta: Dict[str, Any] = {"raw_caption": caption}
        meta.update((name, parse_caption_value(v)) for name, v in zip(extras, values))
        if presplit:
            meta = presplit_captions(meta)
        meta["source_path"] = path
        yield {"__key__": f"{row:09d}", ext: data, "txt": caption, "json": meta}


def _read_image(path: str, skipped: Counter) -> Optional[bytes]:
    try:
        with PathManager.open(path, "rb") as f:
            data = f.read()
    except OSError:
        skipped["missing_image"] += 1
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception:  # PIL raises many types on bad bytes
        skipped["corrupt_image"] += 1
        return None
    return data


def _json_rows(path: str, image_column: str, caption_column: str, extras: Sequence[str]
               ) -> Iterator:
    """``(row, (image path, caption, *extras))`` from a JSON dict or JSON lines file."""
    if not PathManager.exists(path):
        raise DataError(f"caption file not found: {path}")
    with PathManager.open(path, "r", encoding="utf-8-sig") as f:
        text = f.read()
    try:
        whole = json.loads(text) if not path.lower().endswith((".jsonl", ".ndjson")) else None
    except ValueError:
        whole = None  # not one JSON document: try JSON lines
    records: List[Any] = []  # (position named in errors, record)
    if isinstance(whole, dict):
        for n, (image, value) in enumerate(whole.items(), 1):
            rec = dict(value, **{image_column: image}) if isinstance(value, dict) else \
                {image_column: image, caption_column: value}
            records.append((f"entry {n} ({image})", rec))
    elif isinstance(whole, list):
        records = [(f"item {n}", rec) for n, rec in enumerate(whole, 1)]
    elif whole is None:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((f"line {n}", json.loads(line)))
                except ValueError as exc:
                    raise DataError(f"{path}: line {n} is not valid JSON ({exc.msg})") from None
    else:
        raise DataError(f"{path}: expected a JSON object or JSON lines, got {type(whole).__name__}")
    wanted = (image_column, caption_column) + tuple(extras)
    for where, rec in records:
        if not isinstance(rec, dict):
            raise DataError(f"{path}: {where} is not a JSON object")
        missing = [c for c in wanted if c not in rec]
        if missing:
            raise DataError(f"{path}: {where} has no field {missing[0]!r}; available "
                            f"fields: {', '.join(rec) or '(none)'}")
        if not isinstance(rec[image_column], str):
            raise DataError(f"{path}: {where}: image path {image_column!r} must be a "
                            f"string, got {type(rec[image_column]).__name__}")
        caption = rec[caption_column]
        if caption is not None and not isinstance(caption, str):
            raise DataError(f"{path}: {where}: caption {caption_column!r} must be a "
                            f"string, got {type(caption).__name__}")
    return iter([(i, tuple(rec[c] for c in wanted)) for i, (_, rec) in enumerate(records)])
