"""Python-file configs: ``LazyCall`` nodes; loading with file-relative imports; save; overrides."""
from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import importlib
import os
import re
import types
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from omegaconf import AnyNode, DictConfig, ListConfig, OmegaConf

from cosmos.config.instantiate import locate
from cosmos.config.overrides import apply_overrides
from cosmos.utils.atomic import atomic_write_text
from cosmos.utils.errors import ConfigError

__all__ = ["LazyCall", "L", "LazyConfig"]

PathLike = Union[str, "os.PathLike[str]"]
_FLAGS = {"allow_objects": True}
_CFG_MODULE_PREFIX = "cosmos._lazy_config_file."
_PRIMITIVES = (str, int, float, bool, type(None))


class LazyCall:
    """``LazyCall(target)(**kwargs)`` records a call as a config node instead of making it.

    ``target`` is a callable or a string (dotted import path or ``"<registry>.<name>"``).
    The result is a ``DictConfig`` with ``_target_`` plus the keyword arguments.
    """

    def __init__(self, target: Union[str, Callable[..., Any]]) -> None:
        if not (callable(target) or isinstance(target, str)):
            raise ConfigError(
                f"LazyCall target must be a callable or a string, got {type(target).__name__}"
            )
        self._target = target

    def __call__(self, *args: Any, **kwargs: Any) -> DictConfig:
        if args:
            raise ConfigError(
                f"LazyCall({_display_name(self._target)}) takes keyword arguments only; "
                f"got {len(args)} positional argument(s)"
            )
        content = {"_target_": self._target, **kwargs}
        return DictConfig({k: _protect(v) for k, v in content.items()}, flags=dict(_FLAGS))


L = LazyCall


def _protect(value: Any) -> Any:
    """Wrap dataclass/attrs classes and instances so omegaconf keeps them as objects.

    Otherwise omegaconf would turn e.g. a dataclass ``_target_`` into a structured config.
    """
    if isinstance(value, (list, tuple)):
        return [_protect(v) for v in value]
    if isinstance(value, dict):
        return {k: _protect(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) or hasattr(value, "__attrs_attrs__"):
        return AnyNode(value, flags=dict(_FLAGS))
    return value


def _display_name(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        return f"object of type {type(obj).__name__}"
    if name == "<lambda>" or name.endswith(".<lambda>"):
        return "<lambda>"
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module else name


# --------------------------------------------------------------------------------------------
# Loading Python configs with file-relative imports


class _PyLoader:
    """Executes config files; relative imports load sibling config files by path."""

    def __init__(self) -> None:
        self._stack: List[str] = []

    def exec_file(self, path: str) -> Dict[str, Any]:
        """Execute the config at ``path`` in a fresh namespace and return that namespace."""
        source = _read(path)
        try:
            ast.parse(source, filename=path)
        except SyntaxError as err:
            raise ConfigError(f"syntax error in {path} line {err.lineno}: {err.msg}") from None
        real = os.path.realpath(path)
        if real in self._stack:
            chain = " -> ".join(self._stack[self._stack.index(real):] + [real])
            raise ConfigError(f"circular import between config files: {chain}")
        namespace: Dict[str, Any] = {
            "__file__": path,
            "__name__": _CFG_MODULE_PREFIX + _module_suffix(real),
            "__builtins__": builtins,
        }
        self._stack.append(real)
        try:
            with self._patched_import():
                exec(compile(source, path, "exec"), namespace)  # noqa: S102 - configs are code
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(
                f"error while executing config {path}: {type(err).__name__}: {err}"
            ) from err
        finally:
            self._stack.pop()
        return namespace

    @contextlib.contextmanager
    def _patched_import(self) -> Iterator[None]:
        original = builtins.__import__
        if getattr(original, "_cosmos_loader", None) is self:
            yield
            return

        def _import(name: str, globals: Optional[Dict[str, Any]] = None, locals: Any = None,
                    fromlist: Sequence[str] = (), level: int = 0) -> Any:
            module_name = (globals or {}).get("__name__", "")
            if level > 0 and isinstance(module_name, str) and \
                    module_name.startswith(_CFG_MODULE_PREFIX):
                return self._relative_import(globals["__file__"], name, fromlist or (), level)
            return original(name, globals, locals, fromlist, level)

        _import._cosmos_loader = self  # type: ignore[attr-defined]
        builtins.__import__ = _import
        try:
            yield
        finally:
            builtins.__import__ = original

    def _relative_import(self, importer: str, name: str, fromlist: Sequence[str],
                         level: int) -> types.ModuleType:
        base = os.path.dirname(os.path.abspath(importer))
        for _ in range(level - 1):
            base = os.path.dirname(base)
        spelled = "." * level + name
        target = os.path.join(base, *name.split(".")) if name else base
        if os.path.isfile(target + ".py"):
            return self._module(target + ".py")
        if os.path.isdir(target):
            package = types.ModuleType(spelled)
            package.__file__ = target
            for item in fromlist:
                if os.path.isfile(os.path.join(target, item + ".py")):
                    setattr(package, item, self._module(os.path.join(target, item + ".py")))
                elif item != "*":
                    raise _missing_import(importer, f"{spelled}.{item}" if name else spelled + item,
                                          os.path.join(target, item + ".py"))
            return package
        raise _missing_import(importer, spelled, target + ".py")

    def _module(self, path: str) -> types.ModuleType:
        namespace = self.exec_file(path)
        module = types.ModuleType(namespace["__name__"])
        module.__dict__.update(namespace)
        for key, value in namespace.items():  # importers get attribute access, like Detectron2
            if not key.startswith("_") and isinstance(value, dict):
                setattr(module, key, DictConfig(value, flags=dict(_FLAGS)))
        return module


def _missing_import(importer: str, spelled: str, expected: str) -> ConfigError:
    return ConfigError(
        f"config {importer}: cannot import '{spelled}': file not found: {expected}"
    )


def _module_suffix(path: str) -> str:
    return re.sub(r"\W", "_", path)


def _read(path: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _config_from_namespace(namespace: Dict[str, Any]) -> DictConfig:
    kept = {
        k: _protect(v) for k, v in namespace.items()
        if not k.startswith("_") and isinstance(v, (dict, list, DictConfig, ListConfig))
    }
    return DictConfig(kept, flags=dict(_FLAGS))


def _load_yaml(path: str) -> DictConfig:
    text = _read(path)
    try:
        loaded = OmegaConf.create(text)
    except Exception as err:  # yaml / omegaconf parse errors
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot parse {path}: {first}") from err
    if isinstance(loaded, ListConfig):
        raise ConfigError(f"cannot load {path}: top level must be a mapping, not a list")
    return DictConfig(loaded, flags=dict(_FLAGS))


# --------------------------------------------------------------------------------------------
# Saving


def _importable_name(obj: Any, path: str) -> str:
    """Dotted import path of ``obj`` that locates back to it, or a ConfigError naming ``path``."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    name = f"{module}.{qualname}" if module and qualname else None
    if name and "<" not in name and module != "__main__":
        try:
            if locate(name) is obj:
                return name
        except Exception:  # noqa: BLE001 - any failure means "not importable"
            pass
    raise ConfigError(
        f"cannot save config: key '{path}' holds {_display_name(obj)} which is not importable; "
        "configs must be data plus targets"
    )


def _to_saveable(node: Any, path: str) -> Any:
    """Plain containers with callable ``_target_``s as dotted strings; errors for other objects."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "_target_" and callable(value):
                out[key] = _importable_name(value, sub)
            else:
                out[key] = _to_saveable(value, sub)
        return out
    if isinstance(node, (list, tuple)):
        return [_to_saveable(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(node)]
    if isinstance(node, _PRIMITIVES):
        return node
    if callable(node):
        _importable_name(node, path)  # raises for lambdas / local objects
        raise ConfigError(
            f"cannot save config: key '{path}' holds {_display_name(node)} outside a "
            "'_target_'; configs must be data plus targets"
        )
    raise ConfigError(
        f"cannot save config: key '{path}' holds an object of type {type(node).__name__} "
        "which cannot be written to YAML; configs must be data plus targets"
    )


# --------------------------------------------------------------------------------------------
# Pseudo-Python rendering


def _render(node: Any) -> str:
    if isinstance(node, dict):
        return _render_mapping(node)
    if isinstance(node, list):
        return "[" + ", ".join(_render(v) for v in node) + "]"
    if isinstance(node, str) or node is None or isinstance(node, (bool, int, float)):
        return repr(node)
    return _display_name(node)


def _render_kwargs(items: Dict[Any, Any]) -> str:
    if all(isinstance(k, str) and k.isidentifier() for k in items):
        return ", ".join(f"{k}={_render(v)}" for k, v in items.items())
    return "**{" + ", ".join(f"{k!r}: {_render(v)}" for k, v in items.items()) + "}"


def _render_mapping(node: Dict[Any, Any]) -> str:
    if "_target_" not in node:
        return f"dict({_render_kwargs(node)})"
    kwargs = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
    name = _display_name(node["_target_"])
    if node.get("_partial_"):
        args = _render_kwargs(kwargs)
        return f"functools.partial({name}{', ' + args if args else ''})"
    return f"{name}({_render_kwargs(kwargs)})"


# --------------------------------------------------------------------------------------------


def import_plugins(cfg: DictConfig, path: str = "config") -> None:
    """Import the modules listed under the top-level ``imports`` key (e.g. a project's package),
    so the components they register resolve by name — also when a saved YAML is loaded again."""
    modules = cfg.get("imports") or []
    if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"{path}: 'imports' must be a list of module names, got {modules!r}")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"{path}: cannot import '{module}' listed in 'imports': {err}") from None


class LazyConfig:
    """Load, save, override and print configs made of plain data and ``LazyCall`` nodes."""

    @staticmethod
    def load(path: PathLike) -> DictConfig:
        """Load a ``.py`` config (executed; relative imports by file path) or ``.yaml`` file."""
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".py", ".yaml", ".yml"):
            raise ConfigError(f"unsupported config file type '{ext}': {path} (use .py or .yaml)")
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        cfg = (_config_from_namespace(_PyLoader().exec_file(path)) if ext == ".py"
               else _load_yaml(path))
        import_plugins(cfg, path)
        return cfg

    @staticmethod
    def to_dict(cfg: Any) -> Dict[str, Any]:
        """``cfg`` as plain data, exactly as :meth:`save` writes it (targets as dotted paths)."""
        plain = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
        data = _to_saveable(plain, "")
        if not isinstance(data, dict):
            raise ConfigError("cannot save config: the top level must be a mapping")
        return data

    @staticmethod
    def save(cfg: Any, path: PathLike) -> None:
        """Write ``cfg`` as YAML atomically; callable targets become dotted import paths."""
        path = os.fspath(path)
        if os.path.splitext(path)[1].lower() not in (".yaml", ".yml"):
            raise ConfigError(f"cannot save config to {path}: the file name must end in .yaml")
        text = OmegaConf.to_yaml(OmegaConf.create(LazyConfig.to_dict(cfg)), resolve=False)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        atomic_write_text(path, text, verify=_load_yaml)  # a file that does not reload never lands

    @staticmethod
    def apply_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
        """Apply ``key.path=value`` overrides in place (``+key=value`` adds a key); return cfg."""
        return apply_overrides(cfg, overrides)

    @staticmethod
    def to_py(cfg: Any, prefix: str = "cfg.") -> str:
        """A readable pseudo-Python rendering: one ``cfg.key = ...`` line per top-level key."""
        plain = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
        return "\n".join(f"{prefix}{k} = {_render(v)}" for k, v in plain.items()) + "\n"
