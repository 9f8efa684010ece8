"""Recursive instantiation of lazy config nodes (mappings with a ``_target_``)."""
from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import re
from collections import abc
from typing import Any, Callable, Dict, List, Union

from omegaconf import DictConfig, ListConfig
from omegaconf.errors import OmegaConfBaseException

from cosmos.registry import lookup
from cosmos.utils.errors import ConfigError, UnknownComponentError

__all__ = ["instantiate", "locate", "node_path"]

_RESERVED = ("_target_", "_partial_")


def _import_attr(name: str) -> Any:
    """Import the longest importable module prefix of ``name`` and walk the rest as attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Only "this prefix does not exist" means try shorter; a missing dependency
            # inside an existing module is a real error and propagates.
            if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
                continue
            raise
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise AttributeError(attr)
            obj = getattr(obj, attr)
        return obj
    if len(parts) == 1 and hasattr(builtins, name):
        return getattr(builtins, name)
    raise AttributeError(name)


def locate(target: Union[str, Callable[..., Any]]) -> Callable[..., Any]:
    """Resolve a ``_target_``: callables as is; strings via the registries, then import paths."""
    if callable(target):
        return target
    if not isinstance(target, str):
        raise ConfigError(
            f"_target_ must be a string or a callable, got {type(target).__name__}: {target!r}"
        )
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", target):
        raise ConfigError(f"_target_ {target!r} is not a registry name or an import path "
                          "(e.g. losses.clip_infonce or torch.optim.AdamW)")
    registered = lookup(target)
    if registered is not None:
        return registered
    try:
        obj = _import_attr(target)
    except AttributeError:
        raise ConfigError(
            f"cannot find target '{target}' (no such module or attribute)"
        ) from None
    if not callable(obj):
        raise ConfigError(f"target '{target}' is not callable (it is a {type(obj).__name__})")
    return obj


def node_path(node: Any) -> str:
    """Dotted key path of an omegaconf node inside its root config ('' for the root)."""
    parts: List[str] = []
    while isinstance(node, (DictConfig, ListConfig)) and node._get_parent() is not None:
        parts.append(str(node._key()))
        node = node._get_parent()
    return ".".join(reversed(parts))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return path or "<root>"


def _get(cfg: Any, key: Any, path: str) -> Any:
    """``cfg[key]`` with interpolations resolved; omegaconf errors become one-line ConfigErrors."""
    try:
        return cfg[key]
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{_where(_join(path, key))}: {first}") from err


def _resolve_target(target: Any, path: str) -> Callable[..., Any]:
    try:
        return locate(target)
    except UnknownComponentError as err:
        raise UnknownComponentError(f"{_where(path)}: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"{_where(path)}: {err}") from err


def _target_name(target: Any) -> str:
    return getattr(target, "__name__", None) or type(target).__name__


def _check_signature(target: Any, kwargs: Dict[str, Any], partial: bool, path: str) -> bool:
    """Raise ConfigError if ``kwargs`` cannot bind to ``target``; False if no signature exists."""
    try:
        sig = inspect.signature(target)
    except (ValueError, TypeError):
        return False
    try:
        (sig.bind_partial if partial else sig.bind)(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{_where(path)}: {_target_name(target)}() {err}") from err
    return True


def _call(target: Any, kwargs: Dict[str, Any], partial: bool, path: str) -> Any:
    has_signature = _check_signature(target, kwargs, partial, path)
    if partial:
        return functools.partial(target, **kwargs)
    if has_signature:
        return target(**kwargs)
    try:
        return target(**kwargs)
    except TypeError as err:
        # Without a signature, only a TypeError raised by the call itself (no deeper frame)
        # is treated as an argument error.
        if err.__traceback__ is not None and err.__traceback__.tb_next is None:
            raise ConfigError(f"{_where(path)}: {_target_name(target)}() {err}") from err
        raise


def _instantiate_node(cfg: Any, path: str) -> Any:
    if isinstance(cfg, (ListConfig, list, tuple)):
        return [_instantiate_node(_get(cfg, i, path), _join(path, i)) for i in range(len(cfg))]
    if not (isinstance(cfg, abc.Mapping) and "_target_" in cfg):
        return cfg
    kwargs: Dict[str, Any] = {}
    for key in cfg.keys():
        if key not in _RESERVED:
            kwargs[key] = _instantiate_node(_get(cfg, key, path), _join(path, key))
    target = _resolve_target(_get(cfg, "_target_", path), path)
    partial = bool(_get(cfg, "_partial_", path)) if "_partial_" in cfg else False
    return _call(target, kwargs, partial, path)


def instantiate(cfg: Any) -> Any:
    """Recursively build the objects described by ``cfg``.

    Lists become lists of instantiated elements; mappings with ``_target_`` are called with
    their (already instantiated) values as keyword arguments, or wrapped in
    ``functools.partial`` when ``_partial_`` is true; everything else is returned unchanged.
    """
    return _instantiate_node(cfg, node_path(cfg))
