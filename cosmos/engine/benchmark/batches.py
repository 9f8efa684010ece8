"""Synthetic batches with the structure of a config's loader, and loader wrappers for timing.

:func:`template_batch` runs the config's training transforms on a few synthetic scenes (the
exact keys, shapes and dtypes of its real batches, no data files read); :func:`random_batch`
draws a batch of any size like it; :class:`RepeatedBatch` feeds one batch forever and
:class:`TimedLoader` measures how long a real loader keeps the step waiting.
"""
from __future__ import annotations

import random
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import torch

from cosmos.config import instantiate
from cosmos.utils.errors import CosmosError

TEXT_LENGTHS = ("template", "full", "recaptioned")
# "recaptioned" caption lengths: BPE tokens per sentence of an LLM long caption ~ 6 + Poisson(16)
# (mean 22, about 18 words), a global caption 1-5 sentences joined by ". " (one "." token per
# join), a local caption one sentence, + SOT and EOT, cut at the context length.
SENTENCE_TOKENS = (6, 16.0)
MAX_GLOBAL_SENTENCES = 5
NUM_GLOBAL_CAPTIONS = 2


def template_batch(cfg: Any, num_samples: int = 8, seed: int = 0) -> Dict[str, Any]:
    """One collated batch of ``num_samples`` made by the config's training transforms
    (``dataloader.train.image_transform``, ``text_transform``, ``tokenizer``) from synthetic
    scenes: the structure, shapes and dtypes of the config's real batches, no data files read.
    The global torch RNG is left as it was."""
    from cosmos.data import collate
    from cosmos.data.loader import seed_torch
    from cosmos.data.synthetic import SyntheticScenes

    node = cfg.get("dataloader", {}).get("train")
    keys = ("image_transform", "text_transform", "tokenizer")
    if node is None or any(k not in node for k in keys):
        raise CosmosError("--data random needs dataloader.train with image_transform, "
                          "text_transform and tokenizer; use --data loader for this config")
    image_t, text_t, tokenizer = (instantiate(node[k]) for k in keys)
    scenes = SyntheticScenes(num_samples=num_samples, image_size=64, split="train", seed=seed)
    samples = []
    with torch.random.fork_rng(devices=[]):
        for i in range(num_samples):
            scene = scenes[i]
            rng = random.Random(seed * 1_000_003 + i)
            seed_torch(image_t, rng)
            captions = dict(scene["captions"])
            captions.setdefault("caption", " ".join(captions.get("long") or []))
            try:
                out = dict(image_t(scene["image"], rng))
                out["tokens"] = tokenizer(text_t(captions, rng))
            except (ValueError, KeyError, TypeError) as exc:
                raise CosmosError(f"--data random: the config's transforms failed on a "
                                  f"synthetic scene ({type(exc).__name__}: {exc}); "
                                  "use --data loader") from None
            out["key"] = scene["key"]
            samples.append(out)
    return collate(samples)


def _token_rows(template: torch.Tensor, batch: int, text_lengths: str,
                generator: torch.Generator) -> torch.Tensor:
    """Random token ids (batch, ...) with the padding structure of ``template`` (n, ..., L).

    Row i copies the SOT (position 0), EOT (argmax) and zero padding of template row i mod n;
    the ids in between are random in [1, EOT id − 2] (below SOT and EOT, so EOT stays the
    argmax). ``text_lengths="full"``: every caption ends with EOT at the last position;
    ``"recaptioned"``: lengths drawn as recaptioned long captions' sentences (``SENTENCE_TOKENS``;
    of (batch, n, L) tokens the first ``NUM_GLOBAL_CAPTIONS`` per sample are global captions of
    1–5 sentences, the others one sentence; (batch, L) tokens are one global caption each).
    """
    n, length = template.shape[0], template.shape[-1]
    rows = template[torch.arange(batch) % n]
    eot_id = int(template.max())
    if eot_id < 4:
        raise CosmosError(f"--data random: token ids of the template batch end at {eot_id}: "
                          "not a tokenized caption")
    positions = torch.arange(length)
    eot_pos = rows.argmax(dim=-1, keepdim=True)
    if text_lengths == "full":
        eot_pos = torch.full_like(eot_pos, length - 1)
    elif text_lengths == "recaptioned":
        eot_pos = _recaptioned_eot(rows.shape[:-1], length, generator).unsqueeze(-1)
    ids = torch.randint(1, eot_id - 1, rows.shape, generator=generator, dtype=rows.dtype)
    out = torch.where(positions == 0, rows[..., :1], ids)
    out = torch.where(positions == eot_pos, torch.full_like(out, eot_id), out)
    return torch.where(positions > eot_pos, torch.zeros_like(out), out)


def _recaptioned_eot(shape: Tuple[int, ...], length: int, generator: torch.Generator
                     ) -> torch.Tensor:
    """EOT positions (shape) of captions drawn as in ``SENTENCE_TOKENS`` (see TEXT_LENGTHS)."""
    base, rate = SENTENCE_TOKENS
    sentences = torch.ones(shape, dtype=torch.long)
    if len(shape) > 1:
        glob = sentences[..., :NUM_GLOBAL_CAPTIONS]
    else:
        glob = sentences
    glob.copy_(torch.randint(1, MAX_GLOBAL_SENTENCES + 1, glob.shape, generator=generator))
    most = int(sentences.max())
    per_sentence = base + torch.poisson(torch.full((*shape, most), rate), generator=generator)
    used = torch.arange(most) < sentences.unsqueeze(-1)
    tokens = (per_sentence * used).sum(-1).long() + (sentences - 1)  # + one "." per join
    return (tokens + 1).clamp(max=length - 1)  # SOT at 0, EOT right after the last token


def random_batch(template: Dict[str, Any], batch: int, device: torch.device,
                 text_lengths: str = "template", seed: int = 0) -> Dict[str, Any]:
    """A batch of ``batch`` pairs with the keys, shapes and dtypes of ``template`` (n pairs):
    float tensors → N(0, 1) (normalised pixels), ``*token*`` integer tensors → random ids keeping
    the padding structure (:func:`_token_rows`), other tensors (uint8 crops of the fast
    multi-crop) and per-sample lists → repeated; ``*_photometric`` parameters and ``*_boxes``
    (crop boxes of ``resize_on_device``) → repeated, on the host (the batch augmentation reads
    them there)."""
    if text_lengths not in TEXT_LENGTHS:
        raise CosmosError(f"text_lengths must be one of {', '.join(TEXT_LENGTHS)}, "
                          f"got {text_lengths!r}")
    n = int(template.get("batch_size") or next(v.shape[0] for v in template.values()
                                               if isinstance(v, torch.Tensor)))
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(batch) % n

    def like(key: str, value: torch.Tensor) -> torch.Tensor:
        if key.endswith(("_photometric", "_boxes")):  # augmentation parameters, on the host
            return value[index]
        if value.is_floating_point():
            out = torch.randn((batch, *value.shape[1:]), generator=g).to(value.dtype)
        elif "token" in key and value.dtype in (torch.int32, torch.int64):
            out = _token_rows(value, batch, text_lengths, g)
        else:
            out = value[index]
        return out.to(device)

    out: Dict[str, Any] = {}
    for key, value in template.items():
        if isinstance(value, torch.Tensor):
            out[key] = like(key, value)
        elif tensor_list(value):
            out[key] = [like(key, v) for v in value]
        elif key == "batch_size":
            out[key] = batch
        elif isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in index.tolist()]
        else:
            out[key] = value
    return out


def tensor_list(value: Any) -> bool:
    """A non-empty list of tensors (the per-crop lists of a collated batch)."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, torch.Tensor) for v in value))


def slice_batch(batch: Dict[str, Any], n: int) -> Dict[str, Any]:
    """The first ``n`` pairs of a collated batch."""
    size = int(batch.get("batch_size") or 0)
    out: Dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[:n]
        elif tensor_list(value):
            out[key] = [v[:n] for v in value]
        elif key == "batch_size":
            out[key] = min(n, size)
        elif isinstance(value, list) and len(value) == size:
            out[key] = value[:n]
        else:
            out[key] = value
    return out


class RepeatedBatch:
    """An endless loader that yields the same (device-resident) batch."""

    def __init__(self, batch: Dict[str, Any]) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        while True:
            yield self.batch


class TimedLoader:
    """Wraps a loader; ``waits`` holds the seconds each ``next()`` blocked, ``first`` the first
    batch handed out."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self.waits: List[float] = []
        self.first: Optional[Dict[str, Any]] = None

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        it = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - start)
            if self.first is None:
                self.first = batch
            yield batch

    def metrics(self) -> Dict[str, float]:
        inner = getattr(self.loader, "metrics", None)
        return inner() if callable(inner) else {}
