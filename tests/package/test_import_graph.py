"""The package import graph of ``cosmos/`` is layered: imports only point down (or sideways
within a layer), the packages form no cycle, and nothing under ``cosmos/`` imports ``tools``.

Every module is parsed with ``ast`` (no import is executed): top-level and function-local
imports both count, relative imports are resolved against the importing module. A module
``cosmos.<pkg>.<...>`` belongs to package ``<pkg>`` (``cosmos/registry.py`` is package
``registry``).
"""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Optional, Set, Tuple

import pytest

import cosmos

PACKAGE_DIR = os.path.dirname(os.path.abspath(cosmos.__file__))  # the checkout under test
ROOT = os.path.dirname(PACKAGE_DIR)

# Lowest layer first. A package may import packages of its own layer or of a lower one.
LAYERS: List[Tuple[str, ...]] = [
    ("utils", "registry", "config"),          # foundations: no model knowledge
    ("layers",),                              # attention, blocks, MLPs
    ("models", "losses", "data", "solver", "checkpoint"),
    ("meta_arch", "ema", "evaluation"),       # assemble models and losses; judge them
    ("distributed",),                         # process group, FSDP, preemption signals
    ("engine",),                              # trainer, hooks, defaults, training entry
    ("launch",),                              # local spawning, SLURM, sweeps
    ("visualization",),                       # figures of runs and models
]
LAYER_OF: Dict[str, int] = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}
OUTSIDE_LIBRARY = ("tools", "projects", "tests")  # entry points and tests sit above everything


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute name a ``from ... import`` refers to (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported_names(path: str) -> List[Tuple[str, int]]:
    """``(absolute module name, line)`` for every import in the file, nested ones included."""
    module = _module_name(path)
    is_package = os.path.basename(path) == "__init__.py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            names.append((target, node.lineno))
            if target == "cosmos":  # ``from cosmos import engine``
                names += [(f"cosmos.{alias.name}", node.lineno) for alias in node.names]
    return names


def _package(module: str) -> Optional[str]:
    """``cosmos.<pkg>`` part of a module name, ``None`` for ``cosmos`` itself or non-cosmos."""
    parts = module.split(".")
    if parts[0] != "cosmos" or len(parts) < 2:
        return None
    return parts[1]


def _library_files() -> List[str]:
    files = []
    for dirpath, _, filenames in os.walk(PACKAGE_DIR):
        files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
    return sorted(files)


def _edges() -> Dict[Tuple[str, str], List[str]]:
    """``(importer package, imported package) -> ["file:line", ...]`` between distinct packages."""
    edges: Dict[Tuple[str, str], List[str]] = {}
    for path in _library_files():
        src = _package(_module_name(path))
        if src is None:
            continue
        for name, line in _imported_names(path):
            dst = _package(name)
            if dst is not None and dst != src:
                where = f"{os.path.relpath(path, ROOT)}:{line}"
                edges.setdefault((src, dst), []).append(where)
    return edges


def _find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_parser_resolves_relative_and_local_imports(tmp_path):
    pkg = tmp_path / "cosmos" / "models"
    pkg.mkdir(parents=True)
    src = pkg / "tower.py"
    src.write_text("from . import heads\nfrom ..layers import blocks\n"
                   "def f():\n    import cosmos.engine.trainer\n    from ..launch.x import y\n")
    global ROOT
    old, ROOT = ROOT, str(tmp_path)
    try:
        names = [name for name, _ in _imported_names(str(src))]
    finally:
        ROOT = old
    assert names == ["cosmos.models", "cosmos.layers", "cosmos.engine.trainer",
                     "cosmos.launch.x"]


def test_every_package_has_a_layer():
    packages = {_package(_module_name(p)) for p in _library_files()} - {None}
    assert packages - set(LAYER_OF) == set(), "add the new package to LAYERS"
    assert set(LAYER_OF) - packages == set(), "LAYERS names a package that does not exist"


def test_no_import_cycle_between_packages():
    graph: Dict[str, Set[str]] = {}
    for src, dst in _edges():
        graph.setdefault(src, set()).add(dst)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down_the_layers():
    upward = [f"{src} (layer {LAYER_OF[src]}) imports {dst} (layer {LAYER_OF[dst]}): "
              + ", ".join(where)
              for (src, dst), where in sorted(_edges().items())
              if src in LAYER_OF and dst in LAYER_OF and LAYER_OF[dst] > LAYER_OF[src]]
    assert upward == []


def test_distributed_knows_no_models():
    """FSDP wrap units come from the towers' ``fsdp_units()``, not from model-class imports."""
    imported = {dst for (src, dst) in _edges() if src == "distributed"}
    assert imported <= {"utils"}


@pytest.mark.parametrize("outside", OUTSIDE_LIBRARY)
def test_library_never_imports_entry_points(outside):
    found = [f"{os.path.relpath(path, ROOT)}:{line} imports {name}"
             for path in _library_files() for name, line in _imported_names(path)
             if name == outside or name.startswith(outside + ".")]
    assert found == []
