"""Command-line overrides (``key.path=value``) without Hydra: value parsing and strict application.

Values are parsed like a small, predictable YAML: ints, floats (including ``1e-4``), bools
(``true``/``false`` only), None (``none``/``null``/``~``), flow lists and dicts, quoted strings;
anything else stays the raw string. Keys must exist unless the override starts with ``+``.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, List, Sequence, Tuple, Union

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from cosmos.utils.errors import ConfigError

__all__ = ["parse_value", "apply_overrides", "split_override", "all_keys"]

_INT = r"[-+]?[0-9]+(?:_[0-9]+)*"
_DIGITS = r"[0-9]+(?:_[0-9]+)*"
_EXP = r"[eE][-+]?[0-9]+"
_FLOAT = (
    rf"[-+]?(?:(?:{_DIGITS})?\.{_DIGITS}(?:{_EXP})?"
    rf"|{_DIGITS}\.(?:{_EXP})?"
    rf"|{_DIGITS}{_EXP}"
    r"|\.?(?:inf|Inf|INF)|(?:infinity|Infinity))"
    r"|\.?(?:nan|NaN|NAN)"
)
_BOOL = r"true|True|TRUE|false|False|FALSE"
_NULL = r"none|None|NONE|null|Null|NULL|~|"

_TAG = "tag:yaml.org,2002:"
# Order matters: the first matching resolver wins.
_SCALARS: Tuple[Tuple[str, "re.Pattern[str]"], ...] = (
    ("null", re.compile(rf"^(?:{_NULL})$")),
    ("bool", re.compile(rf"^(?:{_BOOL})$")),
    ("int", re.compile(rf"^{_INT}$")),
    ("float", re.compile(rf"^(?:{_FLOAT})$")),
)


def _to_float(text: str) -> float:
    """``float`` that also accepts YAML spellings such as ``.inf`` and ``1_000.5``."""
    return float(text.replace("_", "").lower().replace(".inf", "inf").replace(".nan", "nan"))


def _construct(kind: str, text: str) -> Any:
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        return int(text)
    return _to_float(text)


class _ValueLoader(yaml.SafeLoader):
    """SafeLoader with only our scalar rules (no yes/no bools, octals, dates; ``1e-4`` is float)."""


_ValueLoader.yaml_implicit_resolvers = {}
for _kind, _regex in _SCALARS:
    _ValueLoader.add_implicit_resolver(_TAG + _kind, _regex, None)
    _ValueLoader.add_constructor(
        _TAG + _kind, lambda loader, node, k=_kind: _construct(k, loader.construct_scalar(node))
    )


def _parse_scalar(text: str) -> Any:
    for kind, regex in _SCALARS:
        if regex.match(text):
            return _construct(kind, text)
    return text


def _is_wrapped(text: str) -> bool:
    if len(text) < 2:
        return False
    pairs = {"[": "]", "{": "}", "'": "'", '"': '"'}
    return pairs.get(text[0]) == text[-1]


def parse_value(text: str) -> Any:
    """Parse the value part of an override into a Python value (raw string as a fallback)."""
    text = text.strip()
    if text == "":
        return ""
    if text == "{}":
        return {}
    if text[0] == "{" and ":" not in text:
        return text  # brace patterns such as {000..009} or {train,val}, not flow mappings
    if _is_wrapped(text):
        try:
            return yaml.load(text, Loader=_ValueLoader)  # noqa: S506 - restricted SafeLoader
        except yaml.YAMLError:
            return text
    return _parse_scalar(text)


def split_override(override: str) -> Tuple[str, Any, bool]:
    """Split ``[+]key.path=value`` into ``(key, parsed value, create)``."""
    if not isinstance(override, str) or "=" not in override:
        raise ConfigError(f"invalid override {override!r}: expected key.path=value")
    key, _, raw = override.partition("=")
    key = key.strip()
    create = key.startswith("+")
    key = key[1:].strip() if create else key
    if not key or any(not seg for seg in _segments(key)):
        raise ConfigError(f"invalid override {override!r}: empty key or key segment")
    return key, parse_value(raw), create


def _segments(key: str) -> List[str]:
    return re.sub(r"\[(\d+)\]", r".\1", key).split(".")


def all_keys(cfg: Any) -> List[str]:
    """Every dotted key path in ``cfg`` (intermediate nodes included; list indices as numbers)."""
    plain = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    out: List[str] = []
    _collect(plain, "", out)
    return out


def _collect(node: Any, prefix: str, out: List[str]) -> None:
    items: Iterable[Tuple[Any, Any]]
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        out.append(path)
        _collect(value, path, out)


def _suggest(cfg: Any, key: str) -> List[str]:
    """Up to 3 existing keys close to ``key``: siblings by leaf name first, then by full path."""
    keys = all_keys(cfg)
    parent, _, leaf = key.rpartition(".")
    if not parent or parent in keys:
        siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
        close = difflib.get_close_matches(leaf, list(siblings), n=3)
        if close:
            return [siblings[c] for c in close]
    depth = key.count(".")
    same_depth = [k for k in keys if k.count(".") == depth]
    close = difflib.get_close_matches(key, same_depth, n=3)
    return close or difflib.get_close_matches(key, keys, n=3)


def _unknown_key(cfg: Any, key: str) -> ConfigError:
    close = _suggest(cfg, key)
    if close:
        hint = f"did you mean {', '.join(repr(c) for c in close)}?"
    else:
        hint = "prefix the override with '+' to add a new key"
    return ConfigError(f"unknown config key '{key}' ({hint})")


def _child(node: Any, seg: str) -> Tuple[bool, Any]:
    """``(exists, child node)`` for one path segment of a DictConfig or ListConfig."""
    if isinstance(node, DictConfig):
        if seg in node.keys():
            return True, node._get_node(seg)
        return False, None
    if isinstance(node, ListConfig) and seg.lstrip("-").isdigit():
        index = int(seg)
        if -len(node) <= index < len(node):
            return True, node._get_node(index)
    return False, None


def _container_of(cfg: Any, key: str, segs: Sequence[str], create: bool) -> Any:
    """Walk to the node that holds the last segment, creating dicts on the way if allowed."""
    node = cfg
    for i, seg in enumerate(segs[:-1]):
        exists, child = _child(node, seg)
        if exists and isinstance(child, (DictConfig, ListConfig)):
            node = child
            continue
        if not create:
            raise _unknown_key(cfg, key)
        if exists or not isinstance(node, DictConfig):
            where = ".".join(segs[: i + 1] if exists else segs[:i]) or "<root>"
            raise ConfigError(f"cannot create '{key}': '{where}' is not a mapping")
        with open_dict(node):
            node[seg] = {}
        node = node._get_node(seg)
    return node


def _assign(node: Any, seg: str, value: Any, key: str) -> None:
    target: Union[str, int] = int(seg) if isinstance(node, ListConfig) else seg
    try:
        if isinstance(node, DictConfig):
            with open_dict(node):
                node[target] = value
        else:
            node[target] = value
    except (OmegaConfBaseException, ValueError, TypeError, IndexError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot set '{key}' to {value!r}: {first}") from err


def apply_override(cfg: Any, override: str) -> None:
    """Apply one ``[+]key.path=value`` override to ``cfg`` in place (strict about unknown keys)."""
    key, value, create = split_override(override)
    segs = _segments(key)
    node = _container_of(cfg, key, segs, create)
    exists, old_node = _child(node, segs[-1])
    if not exists:
        if not create:
            raise _unknown_key(cfg, key)
        if not isinstance(node, DictConfig):
            parent = ".".join(segs[:-1]) or "<root>"
            raise ConfigError(f"cannot create '{key}': '{parent}' is not a mapping")
    else:
        value = _checked(node, segs[-1], old_node, value, key, override.partition("=")[2])
    _assign(node, segs[-1], value, key)


def _checked(parent: Any, seg: str, old_node: Any, value: Any, key: str, raw: str) -> Any:
    """``value`` if it fits the parameter it overrides (the target's signature, else the type
    of the value it replaces); a string key takes scalars as their text (``name=2024``)."""
    from cosmos.config import typecheck

    spec = typecheck.signature_spec_for(parent, seg)
    if typecheck.is_unknown(spec):
        old = old_node if isinstance(old_node, (DictConfig, ListConfig)) else _value_of(old_node)
        if isinstance(old, str) and isinstance(value, (int, float)) and raw.strip():
            return raw.strip()
        expected = typecheck.check_like_old(old, value,
                                            numbers_alike=isinstance(parent, DictConfig)
                                            and "_target_" in parent)
    else:
        if (typecheck.check_against(spec, value) and isinstance(value, (int, float))
                and not typecheck.check_against(spec, raw.strip())):
            return raw.strip()  # a string parameter given digits
        expected = typecheck.check_against(spec, value)
    if expected:
        shown = raw.strip() if len(raw.strip()) <= 60 else raw.strip()[:57] + "..."
        raise ConfigError(
            f"override {key}={shown}: '{key}' takes {expected}, got "
            f"{typecheck.describe_value(value)}; give e.g. {key}={_example(old_node)}")
    return value


def _value_of(node: Any) -> Any:
    try:
        return node._value() if node is not None and not node._is_interpolation() else None
    except (AttributeError, OmegaConfBaseException):
        return None


def _example(old_node: Any) -> str:
    """The key's current value as an example of the expected form (when it is short)."""
    if isinstance(old_node, (DictConfig, ListConfig)):
        if isinstance(old_node, DictConfig):
            return "{_target_: NAME, ...}" if "_target_" in old_node else "{key: value, ...}"
        return "[...]"
    old = _value_of(old_node)
    text = "none" if old is None else str(old).lower() if isinstance(old, bool) else str(old)
    return text if 0 < len(text) <= 40 else "VALUE"


def apply_overrides(cfg: Any, overrides: Union[str, Sequence[str]]) -> Any:
    """Apply ``overrides`` in order to ``cfg`` in place and return it."""
    if isinstance(overrides, str):
        overrides = [overrides]
    for override in overrides:
        apply_override(cfg, override)
    return cfg
