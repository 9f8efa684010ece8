"""Webdataset tar shards as an endless stream of batches that resumes at the exact sample.

Layout read (img2dataset / webdataset): consecutive tar members sharing a key, ``key.jpg|png|…``
plus ``key.json`` (captions as strings or pre-split sentence lists, e.g. the DreamLIP keys
``raw_caption``, ``shortIB_captions``, ``longSV_captions``…) and/or ``key.txt`` (one caption,
used as ``raw_caption`` when the JSON has none).

How the stream is made, and why it can resume exactly:

* Every rank runs ``num_workers`` worker processes; ``G = world_size · num_workers`` *streams*
  in all, stream ``g = rank · num_workers + w``. Each stream keeps ``interleave`` shards open and
  takes its next sample from one of them at random; the samples of a shard are read in a random
  order (a local tar is indexed, then read by seeking), so mixing happens without a shuffle
  buffer whose contents would have to be saved.
* Streamed sources (``http(s)://``, ``pipe:CMD``, other iopath URIs; see
  :mod:`cosmos.data.shard_sources`) cannot seek: they are read front to back through a shuffle
  buffer of ``STREAM_SHUFFLE`` samples whose order is a function of ``(seed, g, draw)`` too, so
  a resumed stream re-reads its shard up to its position and continues exactly.
  ``shard_shuffle=K`` gives every source (local files too) that buffered order.
* ``resampled=True`` (default for training): each stream draws shards with replacement — a source
  by ``weights``, then a shard uniformly — endlessly. ``resampled=False``: each epoch the shard
  list is permuted with ``(seed, epoch)`` and stream ``g`` takes shards ``g, g+G, …``, so one pass
  reads every sample exactly once across all ranks and workers; a stream finishes its shards of
  an epoch before it opens the next epoch's.
* All randomness of stream ``g`` — shard draws, sample order, the interleave choice and each
  sample's augmentation — is a function of ``(seed, g, counters)``. A stream's state is a few
  integers plus ``(shard, draw, samples consumed)`` of its open shards; each batch carries its
  stream's state, the loader keeps the latest per stream, and a checkpoint stores them all (all
  ranks' streams, gathered). Batches come from the workers round-robin, so after ``p`` batches
  worker ``i`` continues stream ``(i + p) mod num_workers``.

Bad data never stops a run by itself: corrupt images, missing images, empty captions, unreadable
or truncated shards are skipped and counted (``metrics()`` → ``data/*``; a damaged shard once per
epoch, see :mod:`cosmos.data.tar_reader`); the run stops with a
one-line :class:`~cosmos.utils.errors.DataError` only when the bad fraction passes
``max_bad_fraction`` (after ``min_samples_for_abort`` samples), or when no shard can be read.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch
from braceexpand import braceexpand
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cosmos.data import stats as data_stats
from cosmos.data.loader import collate, seed_torch
from cosmos.data.shard_sources import (
    check_sources, index_counts, is_local, local_path, open_stream,
)
from cosmos.data.tar_reader import TarIntegrityError, TarMember, scan_members
from cosmos.utils import distributed as dist_utils
from cosmos.utils.errors import BadSampleError, ConfigError, DataError

__all__ = ["expand_urls", "ShardFile", "StreamedShard", "buffered_order", "decode_sample",
           "ShardStream", "IMAGE_EXTENSIONS", "STREAM_SHUFFLE"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SOURCE_SEP = "::"
# Samples a stream source (http, pipe:, iopath URI) holds to shuffle within a shard: it cannot
# seek, so its in-shard order is a bounded shuffle buffer instead of a full permutation.
STREAM_SHUFFLE = 256
# JSON string fields that describe a sample rather than caption it (img2dataset, make_shards).
METADATA_KEYS = frozenset({"url", "key", "source_path", "status", "error_message", "sha256",
                           "exif", "md5"})


def source_specs(urls: Union[str, Sequence[str]]) -> List[str]:
    """Shard specs → one spec string per source (``::`` joins sources in a string)."""
    parts = urls.split(SOURCE_SEP) if isinstance(urls, str) else [str(u) for u in urls]
    if not parts:
        raise ConfigError("no shard URLs given (dataloader.train.urls is an empty list)")
    for part in parts:
        if not part.strip():
            raise ConfigError(f"empty shard source in {urls!r}")
    return [p.strip() for p in parts]


def expand_urls(urls: Union[str, Sequence[str]]) -> List[List[str]]:
    """Shard specs → sources, each a list of shard URLs.

    ``"a-{000..009}.tar::b-{0..3}.tar"`` (``::`` joins sources, as the official scripts do) or a
    list of such strings, one per source; braces are expanded. A source that expands to nothing
    usable (an empty URL, e.g. ``"{,}"``) is a :class:`ConfigError` naming it.
    """
    sources = []
    specs = source_specs(urls)
    for i, part in enumerate(specs):
        expanded = [u.strip() for u in braceexpand(part)]
        if not expanded or not all(expanded):
            raise ConfigError(f"shard source {i + 1} of {len(specs)} ({part!r}) expands to "
                              f"{len(expanded)} URL(s), some empty: {expanded[:4]}")
        sources.append(expanded)
    return sources


def _split_member_name(name: str) -> Tuple[str, str]:
    """``dir/abc.jpg`` → (``dir/abc``, ``jpg``): the extension is all after the first dot."""
    directory, _, base = name.rpartition("/")
    key, dot, ext = base.partition(".")
    return (f"{directory}/{key}" if directory else key), (ext.lower() if dot else "")


def _group(members: Sequence[TarMember]) -> List[Tuple[str, Dict[str, TarMember]]]:
    """Consecutive members sharing a key → ``[(key, {ext: member})]`` (extensionless skipped)."""
    samples: List[Tuple[str, Dict[str, TarMember]]] = []
    for member in members:
        key, ext = _split_member_name(member.name)
        if not ext:
            continue
        if not samples or samples[-1][0] != key:
            samples.append((key, {}))
        samples[-1][1][ext] = member
    return samples


def _count_problem(url: str, count: int) -> Optional[str]:
    """A shortfall against the shard index that ``make_shards.py`` writes, if there is one."""
    expected = index_counts(url)
    if expected is not None and count < expected:
        return f"{count} samples where its index lists {expected}"
    return None


class ShardFile:
    """A local shard, indexed: its samples ``[(key, {ext: TarMember})]``, readable in any order.

    The tar is checked as it is indexed (:func:`~cosmos.data.tar_reader.scan_members`: every
    member's stated size present, a proper end-of-archive marker) and its sample count against
    the shard index when there is one. A damaged shard keeps its complete samples and says what
    is wrong in ``problem`` (``truncated`` is True); one with no complete member raises
    ``OSError`` (unreadable).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.file = open(local_path(url), "rb")
        members: List[TarMember] = []
        self.problem: Optional[str] = None
        try:
            size = os.fstat(self.file.fileno()).st_size

            def skip(n: int) -> int:
                start = self.file.tell()
                self.file.seek(min(start + n, size))
                return self.file.tell() - start

            try:
                for member in scan_members(self.file.read, skip):
                    members.append(member)
            except TarIntegrityError as e:
                if not members:
                    raise OSError(f"not a readable tar ({e.detail})") from None
                self.problem = e.detail
        except BaseException:
            self.file.close()
            raise
        self.samples = _group(members)
        self.problem = self.problem or _count_problem(url, len(self.samples))

    @property
    def truncated(self) -> bool:
        return self.problem is not None

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> Tuple[str, Dict[str, bytes]]:
        key, members = self.samples[index]
        files = {}
        for ext, m in members.items():
            self.file.seek(m.offset)
            files[ext] = self.file.read(m.size)
        return key, files

    def close(self) -> None:
        self.file.close()


T = TypeVar("T")


def buffered_order(items: Iterator[T], size: int, rng: random.Random) -> Iterator[T]:
    """``items`` shuffled through a buffer of ``size``: each output is drawn at random from the
    next ``size`` not yet output. A function of the item count and ``rng`` only, so an indexed
    shard (``items = range(n)``) and a stream of the same shard give the same order."""
    buffer: List[T] = []

    def pop() -> T:
        j = rng.randrange(len(buffer))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        return buffer.pop()

    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            yield pop()
    while buffer:
        yield pop()


class _IndexedShard:
    """A local :class:`ShardFile` read in a given order."""

    def __init__(self, url: str, order_of: Callable[[int], List[int]]) -> None:
        self.url = url
        self.file = ShardFile(url)
        self.problem = self.file.problem
        self.order = order_of(len(self.file))
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.order)

    def next(self) -> Tuple[str, Dict[str, bytes]]:
        sample = self.file.read(self.order[self.position])
        self.position += 1
        return sample

    def skip(self, count: int) -> None:
        self.position = min(self.position + count, len(self.order))

    def close(self) -> None:
        self.file.close()


class StreamedShard:
    """A shard read front to back from a stream (http, ``pipe:``, iopath), shuffled through a
    buffer of ``shuffle`` samples (:func:`buffered_order`); the first sample is ready once the
    buffer is full, long before the shard is downloaded.

    A stream that breaks off (connection closed, command failed, tar cut short) keeps the
    samples read until then and says what happened in ``problem``; one that gives no complete
    member raises ``OSError`` at opening (unreadable). Resuming re-reads the shard and skips the
    samples already used (:meth:`skip`).
    """

    def __init__(self, url: str, shuffle: int, rng: random.Random) -> None:
        self.url = url
        self.problem: Optional[str] = None
        self.stream = open_stream(url)
        self.members_read = 0
        self._order = buffered_order(self._samples(), shuffle, rng)
        try:
            self._ahead = next(self._order, None)  # one sample ahead: `done` is known eagerly
        except BaseException:
            self.stream.close()
            raise
        if self._ahead is None and self.problem is not None and self.members_read == 0:
            self.stream.close()
            raise OSError(self.problem)

    def _samples(self) -> Iterator[Tuple[str, Dict[str, bytes]]]:
        key, files, count = None, {}, 0
        try:
            for member in scan_members(self.stream.read):
                self.members_read += 1
                name, ext = _split_member_name(member.name)
                if not ext:
                    continue
                if name != key and key is not None:
                    count += 1
                    yield key, files
                    files = {}
                key = name
                files[ext] = member.data
            self.stream.finish()
        except TarIntegrityError as e:
            failed = self.stream.failure()  # a failing command says more than its cut output
            self.problem = f"{failed} ({e.detail})" if failed else e.detail
        except OSError as e:
            self.problem = str(e)
        if key is not None:
            count += 1
            yield key, files
        self.problem = self.problem or _count_problem(self.url, count)

    @property
    def done(self) -> bool:
        return self._ahead is None

    def next(self) -> Tuple[str, Dict[str, bytes]]:
        sample = self._ahead
        self._ahead = next(self._order, None)
        return sample

    def skip(self, count: int) -> None:
        for _ in range(count):
            if self.done:
                break
            self.next()

    def close(self) -> None:
        self.stream.close()


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def decode_sample(key: str, files: Dict[str, bytes],
                  caption_keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Tar members of one sample → ``{"image": PIL RGB, "captions": {...}, "key": key}``.

    Captions are the JSON's string / string-list fields except ``METADATA_KEYS`` (or exactly
    ``caption_keys``), with the
    ``txt`` member as ``raw_caption`` when the JSON has none. Raises :class:`BadSampleError`
    (``missing_image``, ``corrupt_image``, ``bad_json``, ``empty_caption``).
    """
    ext = next((e for e in IMAGE_EXTENSIONS if e in files), None)
    if ext is None:
        raise BadSampleError("missing_image", f"{key} has only {sorted(files)}")
    captions: Dict[str, Any] = {}
    if "json" in files:
        try:
            meta = json.loads(files["json"].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BadSampleError("bad_json", f"{key}: {e}") from None
        if not isinstance(meta, dict):
            raise BadSampleError("bad_json", f"{key}: not a JSON object")
        captions = {k: v for k, v in meta.items()
                    if (k in caption_keys if caption_keys is not None else k not in METADATA_KEYS)
                    and (isinstance(v, str) or _is_text_list(v))}
    if "txt" in files and "raw_caption" not in captions:
        captions["raw_caption"] = files["txt"].decode("utf-8", errors="replace").strip()
    if not any(v.strip() if isinstance(v, str) else any(s.strip() for s in v)
               for v in captions.values()):
        raise BadSampleError("empty_caption", key)
    try:
        with Image.open(io.BytesIO(files[ext])) as img:
            image = img.convert("RGB")
    except Exception as e:  # PIL raises many types for bad bytes
        raise BadSampleError("corrupt_image", f"{key}.{ext}: {type(e).__name__}") from None
    return {"image": image, "captions": captions, "key": key}


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def _fresh_state() -> Dict[str, Any]:
    return {"epoch": 0, "cursor": 0, "draws": 0, "n": 0, "slots": [],
            "stats": data_stats.new_counters(), "pass_end": {}, "flagged": [0, []]}


class _Spec:
    """Everything a worker needs to produce stream ``g``'s batches (picklable, no open files)."""

    def __init__(self, sources, weights, resampled, interleave, seed, num_streams, batch_size,
                 image_transform, text_transform, tokenizer, caption_keys,
                 max_failed_shards, max_bad_fraction=1.0, min_samples_for_abort=0,
                 shard_shuffle=None) -> None:
        self.sources, self.resampled, self.interleave = sources, resampled, interleave
        self.shard_shuffle = shard_shuffle
        self.seed, self.num_streams, self.batch_size = seed, num_streams, batch_size
        self.image_transform, self.text_transform = image_transform, text_transform
        self.tokenizer, self.caption_keys = tokenizer, caption_keys
        self.max_failed_shards = max_failed_shards
        self.max_bad_fraction, self.min_samples_for_abort = max_bad_fraction, min_samples_for_abort
        w = np.asarray(weights if weights is not None else [len(s) for s in sources], float)
        self.probs = w / w.sum()
        self.all_shards = [u for s in sources for u in s]

    # -- which shard comes next ------------------------------------------------------
    def epoch_shards(self, epoch: int, g: int) -> List[str]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.all_shards))
        return [self.all_shards[i] for i in order[g::self.num_streams]]

    def next_shard(self, g: int, st: Dict[str, Any]) -> Optional[Tuple[str, int]]:
        draw = st["draws"]
        if self.resampled:
            r = np.random.default_rng([self.seed, g, draw])
            source = self.sources[int(r.choice(len(self.sources), p=self.probs))]
            url = source[int(r.integers(len(source)))]
        else:
            mine = self.epoch_shards(st["epoch"], g)
            if st["cursor"] >= len(mine):
                return None
            url = mine[st["cursor"]]
            st["cursor"] += 1
        st["draws"] += 1
        return url, draw

    def open(self, g: int, url: str, draw: int) -> Union[_IndexedShard, StreamedShard]:
        """Shard ``url`` as drawn the ``draw``-th time by stream ``g``, in its sample order: a
        full permutation (local files, by default) or a buffered shuffle (streams, or any source
        when ``shard_shuffle`` is set) — both functions of ``(seed, g, draw)``."""
        rng = _rng("order", self.seed, g, draw)
        if not is_local(url):
            return StreamedShard(url, self.shard_shuffle or STREAM_SHUFFLE, rng)
        if self.shard_shuffle:
            return _IndexedShard(url, lambda n: list(buffered_order(iter(range(n)),
                                                                    self.shard_shuffle, rng)))

        def permutation(n: int) -> List[int]:
            order = list(range(n))
            rng.shuffle(order)
            return order

        return _IndexedShard(url, permutation)

    def _flag(self, st: Dict[str, Any], shard: Union[_IndexedShard, StreamedShard],
              draw: int) -> None:
        """Count a damaged shard once per epoch of this stream (resampled: per ``len(shards)``
        draws), and log it with its name."""
        epoch = draw // len(self.all_shards) if self.resampled else st["epoch"]
        flagged = st.setdefault("flagged", [epoch, []])
        if flagged[0] != epoch:
            flagged[:] = [epoch, []]
        if shard.url in flagged[1]:
            return
        flagged[1].append(shard.url)
        detail = shard.problem if shard.url in shard.problem else f"{shard.url}: {shard.problem}"
        data_stats.count_bad(st["stats"], "truncated_shard", detail)
        logger.warning("damaged shard %s; its complete samples are read", detail)

    # -- the stream ------------------------------------------------------------------
    def samples(self, g: int, st: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        """Endless transformed samples of stream ``g``, advancing ``st`` in place."""
        opened: List[Any] = []
        try:
            yield from self._samples(g, st, opened)
        finally:  # close connections and end commands when the stream is dropped
            for shard in opened:
                shard.close()

    def _samples(self, g: int, st: Dict[str, Any], opened: List[Any]) -> Iterator[Dict[str, Any]]:
        stats = st["stats"]
        keep = []
        for i, (url, draw, used) in enumerate(st["slots"]):  # resume: reopen what was open
            try:
                shard = self.open(g, url, draw)
                shard.skip(used)  # a stream re-reads the shard up to where it was
            except Exception as e:  # was readable before; treat as exhausted now
                logger.warning("could not reopen shard %s on resume (%s); skipping its rest",
                               url, e)
                continue
            if shard.done:
                shard.close()
                continue
            keep.append(i)
            opened.append(shard)
        st["slots"] = [st["slots"][i] for i in keep]
        failed_in_a_row, empty_epochs = 0, 0
        while True:
            while len(st["slots"]) < self.interleave:
                nxt = self.next_shard(g, st)
                if nxt is None:
                    break
                url, draw = nxt
                try:
                    shard = self.open(g, url, draw)
                except Exception as e:
                    detail = str(e) if url in str(e) else f"{url}: {e}"
                    data_stats.count_bad(stats, "unreadable_shard", detail)
                    logger.warning("skipping unreadable shard %s", detail)
                    failed_in_a_row += 1
                    if failed_in_a_row >= self.max_failed_shards:
                        raise DataError(f"{failed_in_a_row} shards in a row could not be read "
                                        f"(last: {detail})")
                    continue
                failed_in_a_row = 0
                if shard.problem:
                    self._flag(st, shard, draw)
                if shard.done:
                    shard.close()
                    continue
                st["slots"].append([url, draw, 0])
                opened.append(shard)
            if not st["slots"]:  # non-resampled: this stream's shards of the epoch are done
                st["pass_end"] = {k: v for k, v in stats.items() if k != "last_bad"}
                logger.info("stream %d finished pass %d: %s", g, st["epoch"], st["pass_end"])
                st["epoch"] += 1
                st["cursor"] = 0
                empty_epochs += 1
                if empty_epochs > 1:
                    raise DataError(f"stream {g}: a whole pass over its shards gave no samples")
                continue
            j = _rng("pick", self.seed, g, st["n"]).randrange(len(st["slots"]))
            slot, shard = st["slots"][j], opened[j]
            key, files = shard.next()
            slot[2] += 1
            if shard.problem:  # a stream finds out only as it reads
                self._flag(st, shard, slot[1])
            if shard.done:
                shard.close()
                del st["slots"][j], opened[j]
            n = st["n"]
            st["n"] += 1
            try:
                sample = self.transform(decode_sample(key, files, self.caption_keys),
                                        _rng("aug", self.seed, g, n))
            except BadSampleError as e:
                data_stats.count_bad(stats, e.reason, f"{shard.url}:{e}")
                # checked here too: a stream of nothing but bad samples never yields a batch
                data_stats.check_bad_fraction(stats, self.max_bad_fraction,
                                              self.min_samples_for_abort, f"stream {g}")
                continue
            stats["samples"] += 1
            empty_epochs = 0
            yield sample

    def transform(self, sample: Dict[str, Any], rng: random.Random) -> Dict[str, Any]:
        seed_torch(self.image_transform, rng)  # torchvision draws crop geometry from torch
        out = dict(self.image_transform(sample["image"], rng))
        try:
            texts = self.text_transform(sample["captions"], rng)
        except ValueError as e:  # e.g. no sentences in the pools this policy reads
            raise BadSampleError("empty_caption", f"{sample['key']}: {e}") from None
        out["tokens"] = self.tokenizer(texts)
        out["key"] = sample["key"]
        return out

    def batches(self, g: int, st: Dict[str, Any]
                ) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
        """Endless ``(batch, state after it)`` of stream ``g``."""
        samples = self.samples(g, st)
        while True:
            batch = collate([next(samples) for _ in range(self.batch_size)])
            yield batch, copy.deepcopy(st)


class _StreamsOfThisRank(IterableDataset):
    def __init__(self, spec: _Spec, rank: int, num_workers: int, position: int,
                 states: Dict[int, Dict[str, Any]], in_main_process: bool) -> None:
        self.spec, self.rank, self.num_workers, self.position = spec, rank, num_workers, position
        self.states, self.in_main_process = states, in_main_process

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        g = self.rank * self.num_workers + (worker + self.position) % self.num_workers
        st = copy.deepcopy(self.states.get(g)) or _fresh_state()
        stream = self.spec.batches(g, st)
        while True:
            # In the main process keep the global torch RNG (dropout, ...) untouched.
            fork = (torch.random.fork_rng(devices=[]) if self.in_main_process
                    else contextlib.nullcontext())
            try:
                with fork:
                    batch, state = next(stream)
            except DataError as e:  # crossing the worker boundary as data keeps it one line
                yield {"_error": str(e)}
                return
            batch["_stream"], batch["_state"] = g, state
            yield batch


class ShardStream:
    """Endless, exactly resumable batches from webdataset shards (see the module docstring).

    Args:
        urls: shard spec(s): ``"dir/shard-{000000..000575}.tar"``; several sources joined with
            ``::`` or given as a list.
        image_transform, text_transform, tokenizer: as for ``ResumableLoader``.
        batch_size: samples per batch on this rank.
        weights: one sampling weight per source (resampled only; default ∝ shard counts).
        resampled: draw shards with replacement (True) or read epochs of disjoint shards (False).
        interleave: shards open at once per stream (samples are drawn from them at random).
        caption_keys: JSON fields to use as captions (default: every string / string-list field).
        shard_shuffle: the order of samples within a shard. None: a full permutation for local
            files (indexed, read by seeking) and a shuffle buffer of ``STREAM_SHUFFLE`` samples
            for streams (http(s), ``pipe:``, iopath URIs); an integer K: a buffer of K samples
            for every source, so local files and streams give the same samples.
        max_bad_fraction, min_samples_for_abort: stop when more than this fraction of the samples
            read so far (once at least ``min_samples_for_abort``) was bad.
    """

    def __init__(self, urls: Union[str, Sequence[str]], image_transform: Callable,
                 text_transform: Callable, tokenizer: Callable, batch_size: int,
                 num_workers: int = 0, seed: int = 0, weights: Optional[Sequence[float]] = None,
                 resampled: bool = True, interleave: int = 4,
                 caption_keys: Optional[Sequence[str]] = None, max_bad_fraction: float = 0.05,
                 min_samples_for_abort: int = 1000, max_failed_shards: int = 50,
                 pin_memory: bool = False, prefetch_factor: int = 2,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 shard_shuffle: Optional[int] = None) -> None:
        sources, specs = expand_urls(urls), source_specs(urls)
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(sources):
                raise ConfigError(f"{len(weights)} weights for {len(sources)} shard sources")
            if not resampled:
                raise ConfigError("source weights need resampled=True "
                                  "(a pass reads every shard once)")
            for i, w in enumerate(weights):
                if not w > 0:
                    raise ConfigError(f"shard source {i + 1} of {len(sources)} ({specs[i]}) has "
                                      f"weight {w:g}; weights must be > 0 (leave the source out "
                                      f"instead)")
        if batch_size < 1 or interleave < 1 or num_workers < 0:
            raise ConfigError(f"need batch_size >= 1, interleave >= 1, num_workers >= 0; got "
                              f"{batch_size}, {interleave}, {num_workers}")
        if shard_shuffle is not None and (isinstance(shard_shuffle, bool)
                                          or not isinstance(shard_shuffle, int)
                                          or shard_shuffle < 1):
            raise ConfigError(f"shard_shuffle must be None or an integer >= 1, got "
                              f"{shard_shuffle!r}")
        check_sources(sources, specs)
        self.rank = dist_utils.get_rank() if rank is None else int(rank)
        self.world_size = dist_utils.get_world_size() if world_size is None else int(world_size)
        self.num_workers = int(num_workers)
        num_streams = self.world_size * max(self.num_workers, 1)
        num_shards = sum(len(s) for s in sources)
        if not resampled and num_shards < num_streams:
            raise DataError(
                f"{num_shards} shards for {self.world_size} ranks x {max(self.num_workers, 1)} "
                f"workers = {num_streams} streams: in non-resampled mode every worker needs a "
                f"shard; "
                f"use fewer workers, more shards, or resampled=True")
        self.spec = _Spec(sources, weights, bool(resampled), int(interleave), int(seed),
                          num_streams, int(batch_size), image_transform, text_transform,
                          tokenizer, caption_keys, int(max_failed_shards),
                          float(max_bad_fraction), int(min_samples_for_abort), shard_shuffle)
        self.batch_size, self.pin_memory = int(batch_size), pin_memory
        self.prefetch_factor = prefetch_factor
        self.max_bad_fraction, self.min_samples_for_abort = max_bad_fraction, min_samples_for_abort
        self.position = 0
        self.states: Dict[int, Dict[str, Any]] = {}

    @property
    def num_streams(self) -> int:
        return self.spec.num_streams

    def _my_streams(self) -> range:
        w = max(self.num_workers, 1)
        return range(self.rank * w, (self.rank + 1) * w)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        dataset = _StreamsOfThisRank(self.spec, self.rank, max(self.num_workers, 1), self.position,
                                     self.states, in_main_process=self.num_workers == 0)
        kwargs = dict(prefetch_factor=self.prefetch_factor) if self.num_workers else {}
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            pin_memory=self.pin_memory, persistent_workers=False, **kwargs)
        for batch in loader:
            if "_error" in batch:
                raise DataError(batch["_error"])
            self.states[int(batch.pop("_stream"))] = batch.pop("_state")
            self.position += 1
            data_stats.check_bad_fraction(self.counters(), self.max_bad_fraction,
                                          self.min_samples_for_abort, "training data")
            yield batch

    # -- metrics and checkpoint state ------------------------------------------------
    def counters(self) -> Dict[str, object]:
        """Cumulative good/bad counts of this rank's streams."""
        return data_stats.merge(self.states[g]["stats"] for g in self._my_streams()
                                if g in self.states)

    def metrics(self) -> Dict[str, float]:
        return data_stats.as_metrics(self.counters())

    def state_dict(self) -> Dict[str, Any]:
        """Position and every stream's state, of all ranks (a collective when distributed)."""
        mine = {str(g): self.states[g] for g in self._my_streams() if g in self.states}
        if dist_utils.is_dist():
            gathered: List[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, mine)
            mine = {k: v for part in gathered for k, v in part.items()}
        return {"position": self.position, "num_streams": self.num_streams,
                "seed": self.spec.seed, "streams": mine}

    def load_state_dict(self, state: Optional[Dict[str, Any]]) -> None:
        self.position, self.states = 0, {}
        if not state:
            return
        if "streams" not in state:
            raise DataError("the checkpoint's data state is not from a shard stream "
                            "(was the run started with another dataloader?)")
        self.position = int(state["position"])
        if int(state["num_streams"]) != self.num_streams:
            logger.warning(
                "data state was saved with %d streams (ranks x workers), now %d: streams restart "
                "with a new seed; the data order is not an exact continuation",
                state["num_streams"], self.num_streams)
            self.spec.seed = int(self.spec.seed) * 1000003 + self.position
            return
        self.states = {int(g): s for g, s in state["streams"].items()}
