"""The crop-policy contract: image and text crop policies, and the batch step after them.

The loaders (``cosmos/data/loader.py``, ``cosmos/data/shards.py``) make one sample as::

    rng = random.Random(<seed of this sample's stream position>)
    seed_torch(image_policy, rng)             # torch.manual_seed(rng.getrandbits(63)), unless
                                              # image_policy.draws_torch_seed is True
    sample = dict(image_policy(image, rng))   # ImageCropPolicy
    sample["tokens"] = tokenizer(text_policy(captions, rng))   # TextCropPolicy
    sample["key"] = <the sample's key>
    batch = collate([sample, ...])            # see cosmos.data.loader.collate

and the trainer runs ``dataloader.augment(batch, device)`` (a ``BATCH_AUGMENTS`` entry, or
None) on each batch before the meta-architecture. The keys a policy may write, with shapes and
dtypes, are the table in :mod:`cosmos.data.batch_keys`. ``tests/package/test_interfaces.py`` checks
every registered policy against this contract.

Image crop policy (``IMAGE_CROPS``, :class:`ImageCropPolicy`):

* ``policy(image: PIL.Image, rng: random.Random | None) -> Dict[str, Tensor | List[Tensor]]``.
  Values are per sample, without the batch dimension: a tensor (collated to (B, …)) or a list
  of tensors of one size each (collated to a list of (B, …), one entry per view). Every sample
  gives the same keys, shapes and list lengths. The image may be in any PIL mode (convert to
  RGB).
* RNG: draw only from ``rng`` and from torch's global CPU generator (which the loader has just
  seeded from ``rng``), or from a ``torch.Generator`` seeded from ``rng`` (then set the class
  attribute ``draws_torch_seed = True`` so the loader skips its seeding). Never Python's or
  NumPy's global generators: a sample's views must be a function of the seed and its stream
  position, whatever the number of workers, so that a resumed run sees the same crops.
  ``rng=None`` (evaluation, figures) may fall back to Python's ``random`` module.
* Picklable (loader workers receive a copy); no state changes between calls that would make
  a view depend on earlier samples.

Text crop policy (``TEXT_CROPS``, :class:`TextCropPolicy`):

* ``policy(captions: Mapping[str, str | List[str]], rng: random.Random) -> str | List[str]``.
  ``captions`` is the sample's caption dict (``raw``, ``short``, ``long`` on the synthetic
  scenes; DreamLIP / PixelProse field names on real shards; a string or a list of sentences
  each). One string → tokens (L,) → batch (B, L) (CLIP); a list of n strings → (n, L) → batch
  (B, n, L) (COSMOS: the ``num_global_captions`` global captions first, then the local ones).
  Every sample gives the same n.
* Raise ``ValueError`` (one line naming the keys read) when a sample has no usable text: the
  shard reader then counts it as a bad sample (``empty_caption``) and takes the next one.
* Draw only from ``rng`` (same reason as above).

Batch augmentation (``BATCH_AUGMENTS``, :class:`BatchAugment`): ``augment(batch, device) ->
batch``, a pure function of the batch (its random parameters travel in the batch), run on the
training device: e.g. ``dino_photometric`` turns ``*_crops_uint8`` + ``*_photometric`` into
``global_crops`` / ``local_crops``.
"""
from __future__ import annotations

import random
from typing import (Any, Dict, List, Mapping, Optional, Protocol, Sequence, Union,
                    runtime_checkable)

import torch

__all__ = ["CropOutput", "ImageCropPolicy", "TextCropPolicy", "BatchAugment"]

CropOutput = Dict[str, Union[torch.Tensor, List[torch.Tensor]]]
CaptionDict = Mapping[str, Union[str, Sequence[str]]]


@runtime_checkable
class ImageCropPolicy(Protocol):
    """PIL image + per-sample ``random.Random`` → dict of per-sample tensors / tensor lists."""

    def __call__(self, image: Any, rng: Optional[random.Random] = None) -> CropOutput: ...


@runtime_checkable
class TextCropPolicy(Protocol):
    """Captions dict + per-sample ``random.Random`` → one string or a list of strings."""

    def __call__(self, captions: CaptionDict, rng: random.Random) -> Union[str, List[str]]: ...


@runtime_checkable
class BatchAugment(Protocol):
    """Collated batch → batch, on ``device`` (a pure function of the batch)."""

    def __call__(self, batch: Dict[str, Any], device: Any = "cpu") -> Dict[str, Any]: ...
