"""Registries of swappable components, addressable by short name from configs and overrides.

A config node may name its target as ``"<registry>.<name>"``, e.g. ``losses.clip_infonce``;
:func:`cosmos.config.instantiate` resolves it here. Built-in components register themselves
when their modules are imported; :func:`load_builtins` imports them all once.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from cosmos.utils.errors import CosmosError, UnknownComponentError

__all__ = [
    "Registry", "REGISTRIES", "BACKBONES", "HEADS", "LOSSES", "IMAGE_CROPS", "TEXT_CROPS",
    "EMA_SCHEDULERS", "DATASETS", "EVALUATORS", "META_ARCHS", "BATCH_AUGMENTS", "load_builtins",
    "lookup",
]

# Modules whose import registers the built-in components.
_BUILTIN_MODULES = (
    "cosmos.models",
    "cosmos.meta_arch",
    "cosmos.losses",
    "cosmos.data",
    "cosmos.ema",
    "cosmos.evaluation",
)
_builtins_state = {"loaded": False, "loading": False}


def load_builtins() -> None:
    """Import every module that registers built-in components (idempotent)."""
    if _builtins_state["loaded"] or _builtins_state["loading"]:
        return
    _builtins_state["loading"] = True
    try:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_state["loaded"] = True
    finally:
        _builtins_state["loading"] = False


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry:
    """A named map from short names to classes or functions.

    Registering the same object twice under one name is a no-op (module reloads, notebooks);
    a different object under a taken name is an error naming both.
    """

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self._objects: Dict[str, Any] = {}

    def register(self, obj: Any = None, *, name: Optional[str] = None) -> Any:
        """Register ``obj`` under ``name`` (default: ``obj.__name__``); usable as a decorator."""
        if obj is None:
            def decorator(target: Any) -> Any:
                self._add(name or target.__name__, target)
                return target
            return decorator
        self._add(name or obj.__name__, obj)
        return obj

    def _add(self, name: str, obj: Any) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"registry '{self.name}': invalid name {name!r} (non-empty, no dots)")
        old = self._objects.get(name)
        if old is not None and not _same_object(old, obj):
            raise CosmosError(
                f"registry '{self.name}': name '{name}' is already taken by {_describe(old)}; "
                f"cannot register {_describe(obj)} under it"
            )
        self._objects[name] = obj

    def remove(self, name: str) -> None:
        """Forget ``name`` (for notebooks and tests)."""
        self._objects.pop(name, None)

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; unknown names list the registered ones."""
        if name not in self._objects:
            load_builtins()
        if name not in self._objects:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownComponentError(
                f"unknown {self.name} '{name}'{hint} registered {self.name}: "
                f"{', '.join(known) if known else '(none)'}"
            )
        return self._objects[name]

    def names(self) -> List[str]:
        load_builtins()
        return sorted(self._objects)

    def items(self) -> List[Tuple[str, Any]]:
        return [(n, self._objects[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self._objects)} entries)"


def _same_object(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same object, or the same definition re-imported."""
    if a is b:
        return True
    return (
        getattr(a, "__module__", None) is not None
        and getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
    )


BACKBONES = Registry("backbones", "image and text towers")
HEADS = Registry("heads", "projection heads and cross-attention poolers")
LOSSES = Registry("losses", "training objectives")
IMAGE_CROPS = Registry("image_crops", "image crop / augmentation policies")
TEXT_CROPS = Registry("text_crops", "caption crop policies")
EMA_SCHEDULERS = Registry("ema_schedulers", "teacher momentum schedules")
DATASETS = Registry("datasets", "training and evaluation datasets")
EVALUATORS = Registry("evaluators", "zero-shot evaluators")
META_ARCHS = Registry("meta_archs", "meta-architectures: batch in, loss dict out")
BATCH_AUGMENTS = Registry("batch_augments", "batched augmentations run on the training device")

REGISTRIES: Dict[str, Registry] = {
    r.name: r
    for r in (BACKBONES, HEADS, LOSSES, IMAGE_CROPS, TEXT_CROPS, EMA_SCHEDULERS, DATASETS,
              EVALUATORS, META_ARCHS, BATCH_AUGMENTS)
}


def lookup(target: str) -> Optional[Callable[..., Any]]:
    """Resolve ``"<registry>.<name>"`` to a registered object, or None if not that form."""
    head, sep, tail = target.partition(".")
    if sep and head in REGISTRIES and tail and "." not in tail:
        return REGISTRIES[head].get(tail)
    return None
