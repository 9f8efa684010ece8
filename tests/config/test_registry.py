"""Registry behaviour: idempotent registration, conflicts, unknown names, built-ins, listing."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from cosmos.registry import LOSSES, REGISTRIES, Registry, lookup
from cosmos.utils.errors import CosmosError, UnknownComponentError
from tests.helpers import REPO


RELOAD_REGISTRY = Registry("reloaded things")


class _Alpha:
    pass


class _Beta:
    pass


def test_register_get_and_idempotent() -> None:
    reg = Registry("things")
    reg.register(_Alpha, name="alpha")
    reg.register(_Alpha, name="alpha")  # the same object again: harmless
    assert reg.get("alpha") is _Alpha
    assert "alpha" in reg and reg.names() == ["alpha"]

    @reg.register(name="beta")
    class Beta:
        pass
    assert reg.get("beta") is Beta


def test_taken_name_is_an_error_naming_both() -> None:
    reg = Registry("things")
    reg.register(_Alpha, name="x")
    with pytest.raises(CosmosError) as err:
        reg.register(_Beta, name="x")
    assert "_Alpha" in str(err.value) and "_Beta" in str(err.value)
    assert reg.get("x") is _Alpha


def test_unknown_name_lists_registered_and_close_matches() -> None:
    reg = Registry("widgets")
    for name in ("clip_infonce", "siglip", "cosmos_distill"):
        reg.register(type(name, (), {"__module__": __name__}), name=name)
    with pytest.raises(UnknownComponentError) as err:
        reg.get("clip_infoNCE")
    msg = str(err.value)
    assert "unknown widgets 'clip_infoNCE'" in msg
    assert "did you mean 'clip_infonce'" in msg
    assert "registered widgets: clip_infonce, cosmos_distill, siglip" in msg
    assert isinstance(err.value, KeyError)


def test_reimported_definition_counts_as_same_object(tmp_path, monkeypatch) -> None:
    reg = Registry("things")
    first = type("Same", (), {"__module__": "pkg.mod", "__qualname__": "Same"})
    second = type("Same", (), {"__module__": "pkg.mod", "__qualname__": "Same"})
    reg.register(first, name="same")
    reg.register(second, name="same")  # a module reload creates a new class object
    assert reg.get("same") is second and reg.names() == ["same"]  # the newest definition wins
    other = type("Other", (), {"__module__": "pkg.mod", "__qualname__": "Other"})
    with pytest.raises(CosmosError, match="pkg.mod.Same.*pkg.mod.Other"):
        reg.register(other, name="same")  # same module, another class: still a conflict
    # A real reload of a module that registers a class with the decorator.
    (tmp_path / "reloaded_component.py").write_text(
        "from tests.config.test_registry import RELOAD_REGISTRY\n\n"
        "@RELOAD_REGISTRY.register(name='component')\nclass Component:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("reloaded_component")
    try:
        old_class = module.Component
        reloaded = importlib.reload(module)
        assert reloaded.Component is not old_class
        assert RELOAD_REGISTRY.get("component") is reloaded.Component
    finally:
        sys.modules.pop("reloaded_component", None)


def test_builtins_are_registered() -> None:
    expected = {
        "backbones": {"vit", "text_transformer"},
        "losses": {"clip_infonce"},
        "image_crops": {"clip_single", "clip_eval"},
        "text_crops": {"full_caption", "raw_caption"},
        "datasets": {"synthetic_scenes"},
        "evaluators": {"synthetic_scenes"},
        "meta_archs": {"clip"},
    }
    for registry, names in expected.items():
        assert names <= set(REGISTRIES[registry].names()), registry
    assert {"backbones", "heads", "losses", "image_crops", "text_crops", "ema_schedulers",
            "datasets", "evaluators"} <= set(REGISTRIES)


def test_lookup_registry_form() -> None:
    assert lookup("losses.clip_infonce") is LOSSES.get("clip_infonce")
    assert lookup("torch.nn.Linear") is None  # not a registry name: left to the importer
    with pytest.raises(UnknownComponentError):
        lookup("losses.nope")


@pytest.mark.slow
def test_list_components_tool() -> None:
    out = subprocess.run([sys.executable, "tools/list_components.py"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "losses.clip_infonce" in out and "datasets.synthetic_scenes" in out
    assert "cosmos.models.vit.VisionTransformer" in out
