"""Every third-party package that cosmos/ imports is declared in setup.cfg, and vice versa."""
from __future__ import annotations

import ast
import configparser
import os
import re
import sys
from typing import Dict, Set

from tests.helpers import REPO

# Import name -> distribution name where they differ.
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "open_clip": "open-clip-torch"}
# Declared but not imported by name: torch.utils.tensorboard needs the tensorboard package.
USED_INDIRECTLY = {"tensorboard"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(root: str) -> Dict[str, Set[str]]:
    """Top-level third-party module names imported anywhere under ``root`` → the files."""
    found: Dict[str, Set[str]] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "cosmos":
                        found.setdefault(top, set()).add(os.path.relpath(path, REPO))
    return found


def _declared() -> Dict[str, Set[str]]:
    """``{"install_requires": {...}, "<extra>": {...}}`` of normalised distribution names."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))

    def names(text: str) -> Set[str]:
        return {_norm(re.match(r"[A-Za-z0-9_.\-]+", line.strip()).group(0))
                for line in text.splitlines() if line.strip() and not line.strip().startswith("#")}

    out = {"install_requires": names(cfg["options"]["install_requires"])}
    for extra, text in cfg["options.extras_require"].items():
        out[extra] = names(text)
    return out


def test_every_import_is_declared_and_every_requirement_used() -> None:
    imports = _imports(os.path.join(REPO, "cosmos"))
    declared = _declared()
    everything = set().union(*declared.values())
    undeclared = {m: sorted(f) for m, f in imports.items()
                  if _norm(DISTRIBUTION.get(m, m)) not in everything}
    assert not undeclared, f"imported but not declared in setup.cfg: {undeclared}"
    used = {_norm(DISTRIBUTION.get(m, m)) for m in imports}
    unused = declared["install_requires"] - used - USED_INDIRECTLY
    assert not unused, f"install_requires that cosmos/ never imports: {sorted(unused)}"
    # the known cases, so that the scan itself is seen working
    assert {"PIL", "yaml", "numpy", "safetensors", "braceexpand", "torch"} <= set(imports)
    assert "webdataset" not in imports and "webdataset" in declared["test"]
    assert "xformers" in imports and "xformers" in declared["xformers"]


def test_requirements_have_lower_bounds_and_constraints_pin_them() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    lines = [x.strip() for x in cfg["options"]["install_requires"].splitlines()
             if x.strip() and not x.strip().startswith("#")]
    assert all(">=" in x and "==" not in x for x in lines), lines
    pins = {}
    for line in open(os.path.join(REPO, "constraints.txt")):
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[_norm(name)] = version
    for line in lines:
        name = _norm(re.match(r"[A-Za-z0-9_.\-]+", line).group(0))
        assert name in pins, f"{name} has no exact version in constraints.txt"
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "-c constraints.txt" in makefile and "constraints.txt | cksum" in makefile
