"""The keys of a training batch: name, shape, dtype, who writes it and who reads it.

A batch is the dict that ``cosmos.data.loader.collate`` makes from the samples of the crop
policies (:mod:`cosmos.data.crop_policy`), after the optional batch augmentation, as the
meta-architecture receives it. Shapes use B (batch), G / L (global / local views), g / l
(their sides), n (captions per sample), T (context length), K (photometric parameters,
``len(cosmos.data.photometric.PARAM_COLUMNS)``). Writers and readers are registry names:
image crop policies (``image_crops.*``), batch augmentations (``batch_augments.*``, which
consume the uint8 keys and write ``global_crops`` / ``local_crops``) and meta-architectures
(``meta_archs.*``).

The table is :data:`BATCH_KEYS` (rendered by :func:`markdown_table` in docs/architecture.md);
:func:`batch_problems` checks a batch against it (``tests/package/test_interfaces.py`` runs every
registered crop policy through it). A new policy that writes a new key adds a row here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

import torch

__all__ = ["BatchKey", "BATCH_KEYS", "batch_problems", "markdown_table"]


@dataclass(frozen=True)
class BatchKey:
    """One row of the table. ``ranks``: allowed numbers of dimensions of the (collated) tensor,
    or of each list entry when ``container == "list"``; ``dtype`` a torch dtype, ``str`` or
    ``int``."""

    name: str
    shape: str
    dtype: Any
    writer: str
    reader: str
    ranks: Tuple[int, ...] = ()
    container: str = "tensor"  # "tensor" | "list" (of tensors / of str) | "int"


BATCH_KEYS: Dict[str, BatchKey] = {k.name: k for k in (
    BatchKey("images", "(B, 3, H, W)", torch.float32, "clip_single, clip_eval",
             "clip", (4,)),
    BatchKey("global_crops", "[G × (B, 3, g, g)]", torch.float32,
             "cosmos_multicrop, dino_photometric", "cosmos", (4,), "list"),
    BatchKey("local_crops", "[L × (B, 3, l, l)] or []", torch.float32,
             "as global_crops", "cosmos", (4,), "list"),
    BatchKey("global_crops_uint8", "(B, G, g, g, 3)", torch.uint8,
             "cosmos_multicrop_fast", "dino_photometric", (5,)),
    BatchKey("local_crops_uint8", "(B, L, l, l, 3)", torch.uint8,
             "cosmos_multicrop_fast", "dino_photometric", (5,)),
    BatchKey("global_photometric", "(B, G, K)", torch.float32,
             "cosmos_multicrop_fast", "dino_photometric", (3,)),
    BatchKey("local_photometric", "(B, L, K)", torch.float32,
             "cosmos_multicrop_fast", "dino_photometric", (3,)),
    BatchKey("image_uint8", "(B, Hc, Wc, 3)", torch.uint8,
             "cosmos_multicrop_fast (on device)", "dino_photometric", (4,)),
    BatchKey("global_boxes", "(B, G, 5)", torch.float64,
             "cosmos_multicrop_fast (on device)", "dino_photometric", (3,)),
    BatchKey("local_boxes", "(B, L, 5)", torch.float64,
             "cosmos_multicrop_fast (on device)", "dino_photometric", (3,)),
    BatchKey("tokens", "(B, T) or (B, n, T)", torch.int64,
             "text policy + tokenizer",
             "clip (B, T), cosmos", (2, 3)),
    BatchKey("key", "[B × str]", str, "loader", "(debugging)", (), "list"),
    BatchKey("batch_size", "int", int, "collate", "trainer", (), "int"),
)}


def markdown_table(keys: Mapping[str, BatchKey] = BATCH_KEYS) -> str:
    """The table as markdown (docs/architecture.md holds this text; a test compares them)."""
    lines = ["| key | shape | dtype | written by | read by |", "|---|---|---|---|---|"]
    for row in keys.values():
        dtype = str(row.dtype).replace("torch.", "") if row.container != "int" else "int"
        dtype = "str" if row.dtype is str else dtype
        lines.append(f"| `{row.name}` | {row.shape} | {dtype} | {row.writer} | {row.reader} |")
    return "\n".join(lines)


def batch_problems(batch: Mapping[str, Any], keys: Mapping[str, BatchKey] = BATCH_KEYS
                   ) -> List[str]:
    """What in ``batch`` disagrees with the table: undeclared keys, wrong container, dtype,
    number of dimensions, or a batch dimension that is not ``batch["batch_size"]``. Empty
    when the batch follows the table."""
    problems: List[str] = []
    size = batch.get("batch_size")
    for name, value in batch.items():
        row = keys.get(name)
        if row is None:
            problems.append(f"{name}: not in cosmos.data.batch_keys.BATCH_KEYS")
            continue
        if row.container == "int":
            if not isinstance(value, int):
                problems.append(f"{name}: expected an int, got {type(value).__name__}")
            continue
        items = value if row.container == "list" else [value]
        if row.container == "list" and not isinstance(value, list):
            problems.append(f"{name}: expected a list, got {type(value).__name__}")
            continue
        for item in items:
            problems += _item_problems(name, row, item, size)
    return problems


def _item_problems(name: str, row: BatchKey, item: Any, size: Any) -> List[str]:
    if row.dtype is str:
        return [] if isinstance(item, str) else [f"{name}: expected str items, got "
                                                 f"{type(item).__name__}"]
    if not isinstance(item, torch.Tensor):
        return [f"{name}: expected a tensor, got {type(item).__name__}"]
    out = []
    if item.dtype != row.dtype:
        out.append(f"{name}: dtype {item.dtype}, declared {row.dtype}")
    if row.ranks and item.ndim not in row.ranks:
        out.append(f"{name}: shape {tuple(item.shape)}, declared {row.shape}")
    elif isinstance(size, int) and item.ndim and item.shape[0] != size:
        out.append(f"{name}: batch dimension {item.shape[0]}, batch_size {size}")
    return out
