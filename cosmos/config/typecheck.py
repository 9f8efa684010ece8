"""Type checks of config values before anything is built or written.

A value is checked against what will receive it: the annotation of the ``_target_``'s parameter
(``Optional[float]``, ``Sequence[int]``, ``Literal[...]`` …), else the type of the parameter's
default, else (plain keys such as ``train.max_iter``) the type of the value the key had before
an override. ints accept ints, floats accept ints and floats, bools only ``true``/``false``,
strings any text, None only where the annotation is Optional (or the key was None); lists and
mappings their kind. Types the checker does not know (tensors, modules, callables) pass.
"""
from __future__ import annotations

import collections.abc as cabc
import inspect
import types
import typing
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from omegaconf import DictConfig, ListConfig

from cosmos.utils.errors import ConfigError

__all__ = ["check_types", "check_section", "parameter_spec", "check_against", "check_like_old",
           "describe_value"]

_UNKNOWN = object()  # "the checker cannot tell": a value of this spec always passes
_SEQUENCES = (list, tuple, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


def _is_list(value: Any) -> bool:
    """Lists, tuples and omegaconf's list and tuple nodes (not strings)."""
    return isinstance(value, cabc.Sequence) and not isinstance(value, (str, bytes))


def _is_target_node(value: Any) -> bool:
    return isinstance(value, (DictConfig, dict)) and "_target_" in value


def _accepts(spec: Any, value: Any) -> Optional[bool]:
    """True / False, or None when ``spec`` is a type this checker does not judge."""
    if spec is _UNKNOWN or spec is Any or spec is inspect.Parameter.empty:
        return None
    if _is_target_node(value):
        return None  # a component: its result's type is known only once built
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        verdicts = [_accepts(a, value) for a in args]
        if True in verdicts:
            return True
        return None if None in verdicts else False
    if origin is typing.Literal:
        return value in args
    if spec is None or spec is type(None):
        return value is None
    if spec is bool:
        return isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec is str:
        return isinstance(value, str)
    container = origin or spec
    if container in _SEQUENCES:
        if not _is_list(value):
            return False
        return _accepts_items(container, args, list(value))
    if container in _MAPPINGS:
        return isinstance(value, (dict, DictConfig))
    if inspect.isclass(spec):
        if isinstance(value, spec):
            return True
        scalar = isinstance(value, (str, bool, int, float, type(None)))
        if (scalar or _is_list(value)) and issubclass(spec, (torch.Tensor, torch.nn.Module)):
            return False  # text, numbers and lists never become tensors or modules
    return None


def _accepts_items(container: Any, args: Tuple[Any, ...], items: list) -> Optional[bool]:
    if not args:
        return True
    if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(items):
            return False
        verdicts = [_accepts(a, v) for a, v in zip(args, items)]
    else:
        verdicts = [_accepts(args[0], v) for v in items]
    return False if False in verdicts else True


def describe_spec(spec: Any) -> str:
    """``Optional[float]`` → ``a number or none``."""
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        known = [describe_spec(a) for a in args if _describable(a)]
        return " or ".join(dict.fromkeys(known)) or "another type"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    names = {bool: "true or false", int: "an int", float: "a number", str: "a string",
             type(None): "none", None: "none"}
    if spec in names:
        return names[spec]
    container = origin or spec
    if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {len(args)} ({', '.join(describe_spec(a) for a in args)})"
    if inspect.isclass(spec) and issubclass(spec, torch.nn.Module):
        return "a component {_target_: ...}"
    if container in _SEQUENCES:
        return f"a list of {describe_spec(args[0]).removeprefix('a ').removeprefix('an ')}s" \
            if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else "a list"
    if container in _MAPPINGS:
        return "a mapping"
    return getattr(spec, "__name__", str(spec))


def _describable(spec: Any) -> bool:
    return _accepts(spec, object()) is not None or spec in (type(None), None)


def describe_value(value: Any) -> str:
    kinds = {bool: "a bool", int: "an int", float: "a number", str: "a string"}
    if value is None:
        return "none"
    if _is_list(value):
        items = list(value)
        text = repr([describe_value(v) if isinstance(v, (ListConfig, DictConfig)) else v
                     for v in items])
        return "a list " + (text if len(text) <= 60 else text[:57] + "...")
    if isinstance(value, (DictConfig, dict)):
        return "a component" if _is_target_node(value) else "a mapping"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{kinds.get(type(value), type(value).__name__)} {text}"


def _signature(target: Any) -> Optional[inspect.Signature]:
    try:  # string annotations (``from __future__ import annotations``) evaluated
        return inspect.signature(target, eval_str=True)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: use the raw one
        pass
    try:
        return inspect.signature(target)
    except (ValueError, TypeError):  # builtins without a signature
        return None


def _spec_of_parameter(param: inspect.Parameter) -> Any:
    ann = param.annotation
    if ann is not inspect.Parameter.empty and not isinstance(ann, str):
        if param.default is None and typing.get_origin(ann) is not typing.Union and ann is not Any:
            return Optional[ann]  # ``x: int = None`` accepts None
        return ann
    default = param.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float, str)):
        return type(default)
    return _UNKNOWN


def parameter_spec(target: Any, name: str) -> Any:
    """What ``target(name=...)`` accepts: an annotation, a default's type, or "unknown"."""
    sig = _signature(target)
    if sig is None:
        return _UNKNOWN
    param = sig.parameters.get(name)
    if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        return _UNKNOWN
    return _spec_of_parameter(param)


def check_against(spec: Any, value: Any) -> Optional[str]:
    """None if ``value`` fits ``spec``, else what was expected (``"a number"``)."""
    return describe_spec(spec) if _accepts(spec, value) is False else None


def check_like_old(old: Any, value: Any, numbers_alike: bool = False) -> Optional[str]:
    """For keys without a signature: None if ``value`` may replace ``old``, else the expected
    kind. Containers and components may also be set to none (``ema=none`` removes it).
    ``numbers_alike``: an int may become a float (an argument of a target without a signature,
    whose current value is an example rather than a declared type)."""
    if old is None:
        return None
    if isinstance(old, (DictConfig, dict)):
        return None if value is None or isinstance(value, (DictConfig, dict)) else (
            "a component {_target_: ...} or none" if _is_target_node(old) else "a mapping or none")
    if _is_list(old):
        return None if value is None or _is_list(value) \
            else "a list or none"
    if isinstance(old, bool):
        spec: Any = bool
    elif isinstance(old, int):
        spec = float if numbers_alike else int
    elif isinstance(old, float):
        spec = float
    elif isinstance(old, str):
        spec = str
    else:
        return None
    return check_against(spec, value)


def _items(node: Any, path: str) -> Iterator[Tuple[str, Any]]:
    """``(dotted path, value)`` of every target node in ``node`` (depth first)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node.keys():
            child = _child(node, key)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from _items(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            child = _child(node, i)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from _items(child, f"{path}.{i}" if path else str(i))


def _child(node: Any, key: Any) -> Any:
    try:
        if node._get_node(key)._is_interpolation():
            return None  # resolved (and checked) when built
        return node[key]
    except Exception:  # noqa: BLE001 - a broken interpolation is reported when it is built
        return None


def _target_of(node: DictConfig) -> Any:
    from cosmos.config.instantiate import locate

    target = _child(node, "_target_")
    try:
        return locate(target)
    except Exception:  # noqa: BLE001 - unknown targets are reported, with their path, when built
        return None


def check_types(cfg: Any) -> None:
    """Raise a one-line :class:`ConfigError` for the first value of ``cfg`` that does not fit
    the parameter of its ``_target_`` it is passed to (annotation or default's type)."""
    if not isinstance(cfg, (DictConfig, ListConfig)):
        return
    for path, node in _items(cfg, ""):
        target = _target_of(node)
        if target is None:
            continue
        sig = _signature(target)
        if sig is None:
            continue
        for key in node.keys():
            if key in ("_target_", "_partial_") or key not in sig.parameters:
                continue
            param = sig.parameters[key]
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            value = _child(node, key)
            if value is None:
                continue  # a placeholder filled in by code or on the command line
            if node._get_node(key)._is_interpolation():
                continue
            expected = check_against(_spec_of_parameter(param), value)
            if expected:
                where = f"{path}.{key}" if path else str(key)
                name = getattr(target, "__name__", str(target))
                raise ConfigError(
                    f"{where}: {name}() expects {expected} for '{key}', got "
                    f"{describe_value(value)}; fix the config or override {where}=VALUE")


def signature_spec_for(parent: Any, key: str) -> Any:
    """The spec of ``parent[key]`` when ``parent`` is a target node whose target can be found
    now (plugins named later on the command line are not imported yet: unknown)."""
    if not _is_target_node(parent):
        return _UNKNOWN
    target = _target_of(parent)
    return _UNKNOWN if target is None else parameter_spec(target, key)


def is_unknown(spec: Any) -> bool:
    return spec is _UNKNOWN


def check_section(node: Any, schema: Dict[str, Any], path: str) -> None:
    """Check the plain keys of ``node`` (a section without a target, e.g. ``train``) against
    ``schema`` ({key: annotation}) as if it were a signature; absent keys are not required."""
    if not isinstance(node, DictConfig):
        return
    for key, spec in schema.items():
        if key not in node or node._get_node(key)._is_interpolation():
            continue
        value = _child(node, key)
        expected = check_against(spec, value)
        if expected:
            raise ConfigError(f"{path}.{key}: expects {expected}, got {describe_value(value)}; "
                              f"fix the config or override {path}.{key}=VALUE")
