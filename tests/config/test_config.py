"""Tests for cosmos.config: LazyCall, LazyConfig load/save/overrides/to_py, instantiate."""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, List

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

import cosmos.registry as registry
from cosmos.config import L, LazyCall, LazyConfig, instantiate, locate
from cosmos.config.overrides import parse_value
from cosmos.utils.errors import ConfigError, CosmosError, UnknownComponentError

CONFIGS = Path(__file__).parent.parent / "configs"
FLAGS = {"allow_objects": True}


# ------------------------------------------------------------------ test components


@dataclasses.dataclass
class Encoder:
    width: int = 8
    depth: int = 2


@dataclasses.dataclass
class Model:
    encoder: Any
    heads: List[Any] = dataclasses.field(default_factory=list)
    scale: float = 1.0


@dataclasses.dataclass
class TinyLoss:
    temperature: float = 0.07


class Exploding:
    def __init__(self, kind: str = "value") -> None:
        if kind == "value":
            raise ValueError("real bug inside constructor")
        raise TypeError("real TypeError inside constructor")


def add(a: int, b: int = 0) -> int:
    return a + b


@pytest.fixture(autouse=True)
def _no_builtin_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests independent of the other cosmos packages being importable."""
    monkeypatch.setitem(registry._builtins_state, "loaded", True)


@pytest.fixture
def tiny_loss() -> Any:
    registry.LOSSES.register(TinyLoss, name="test_tiny_loss")
    yield TinyLoss
    registry.LOSSES.remove("test_tiny_loss")


# ------------------------------------------------------------------ LazyCall


def test_lazycall_builds_editable_dictconfig() -> None:
    node = L(Encoder)(width=4)
    assert isinstance(node, DictConfig)
    assert node._target_ is Encoder and node.width == 4
    node.depth = 3
    node["width"] = 16
    assert instantiate(node) == Encoder(width=16, depth=3)
    assert LazyCall("torch.optim.AdamW")(lr=0.1)._target_ == "torch.optim.AdamW"


def test_lazycall_rejects_positional_args_and_bad_targets() -> None:
    with pytest.raises(ConfigError, match="keyword arguments only"):
        L(Encoder)(4)
    with pytest.raises(ConfigError, match="callable or a string"):
        L(3)


# ------------------------------------------------------------------ loading


def test_load_base_keeps_only_config_nodes() -> None:
    cfg = LazyConfig.load(CONFIGS / "base.py")
    assert isinstance(cfg, DictConfig)
    assert set(cfg.keys()) == {"model", "optimizer", "train"}
    assert cfg.model._target_ is timedelta
    assert cfg.optimizer.lr == 1e-3 and list(cfg.optimizer.betas) == [0.9, 0.98]
    assert cfg.train.log.period == 20
    assert instantiate(cfg.model) == timedelta(days=1, hours=2)


def test_load_child_with_relative_import_and_no_leak() -> None:
    child = LazyConfig.load(str(CONFIGS / "child.py"))
    assert child.model.hours == 5 and child.optimizer.lr == 5e-4 and child.train.max_iter == 200
    base = LazyConfig.load(CONFIGS / "base.py")
    assert base.model.hours == 2 and base.optimizer.lr == 1e-3 and base.train.max_iter == 100
    again = LazyConfig.load(CONFIGS / "child.py")
    assert again.model.hours == 5 and again.model.days == 1


def test_load_two_levels_deep_with_multi_dot_imports() -> None:
    cfg = LazyConfig.load(CONFIGS / "sub" / "deep" / "grandchild.py")
    assert set(cfg.keys()) == {"model", "dataloader", "extra"}
    assert cfg.model.days == 7 and cfg.model.hours == 2  # fresh base, not the child's copy
    assert cfg.dataloader.batch_size == 64
    assert cfg.dataloader.shards == "s3://bucket/{000..009}.tar"
    assert cfg.extra.child_max_iter == 200
    assert instantiate(cfg.model) == timedelta(days=7, hours=2)


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.py"
    with pytest.raises(ConfigError) as err:
        LazyConfig.load(path)
    assert str(err.value) == f"config file not found: {path}"


def test_load_syntax_error_names_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("x = dict(a=1)\n\ny = dict(b=\n")
    with pytest.raises(ConfigError) as err:
        LazyConfig.load(path)
    msg = str(err.value)
    assert msg.startswith(f"syntax error in {path} line 3: ")


def test_load_execution_error_and_missing_relative_import(tmp_path: Path) -> None:
    (tmp_path / "raises.py").write_text("x = dict(a=1)\nraise ValueError('boom')\n")
    with pytest.raises(ConfigError) as err:
        LazyConfig.load(tmp_path / "raises.py")
    expected = f"error while executing config {tmp_path / 'raises.py'}: ValueError: boom"
    assert str(err.value) == expected
    assert isinstance(err.value.__cause__, ValueError)

    importer = tmp_path / "importer.py"
    importer.write_text("from .missing import x\n")
    with pytest.raises(ConfigError) as err:
        LazyConfig.load(importer)
    assert str(importer) in str(err.value) and str(tmp_path / "missing.py") in str(err.value)


def test_load_circular_relative_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import y\nx = dict(v=1)\n")
    (tmp_path / "b.py").write_text("from .a import x\ny = dict(v=2)\n")
    with pytest.raises(ConfigError, match="circular import"):
        LazyConfig.load(tmp_path / "a.py")


def test_load_restores_builtin_import(tmp_path: Path) -> None:
    import builtins

    before = builtins.__import__
    LazyConfig.load(CONFIGS / "child.py")
    (tmp_path / "bad.py").write_text("raise RuntimeError('x')\n")
    with pytest.raises(ConfigError):
        LazyConfig.load(tmp_path / "bad.py")
    assert builtins.__import__ is before


# ------------------------------------------------------------------ value parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3), ("-2", -2), ("1_000", 1000),
        ("0.5", 0.5), ("1e-4", 1e-4), ("5e-4", 5e-4), ("-1.5E3", -1500.0),
        ("true", True), ("False", False),
        ("none", None), ("None", None), ("null", None), ("~", None),
        ("[1, 2, a]", [1, 2, "a"]), ("[[1, 2], [3, 1e-4]]", [[1, 2], [3, 1e-4]]),
        ("{a: 1, b: [x, null]}", {"a": 1, "b": ["x", None]}),
        ("'x y'", "x y"), ('"3"', "3"),
        ("/data/x.tar", "/data/x.tar"), ("s3://b/{000..009}.tar", "s3://b/{000..009}.tar"),
        ("losses.clip_infonce", "losses.clip_infonce"), ("a=b", "a=b"),
        ("yes", "yes"), ("2024-01-01", "2024-01-01"), ("[1, 2", "[1, 2"), ("", ""),
    ],
)
def test_parse_value(text: str, expected: Any) -> None:
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_value_inf() -> None:
    assert parse_value("inf") == math.inf and parse_value("-inf") == -math.inf


# ------------------------------------------------------------------ overrides


def _cfg() -> DictConfig:
    return LazyConfig.load(CONFIGS / "base.py")


def test_overrides_of_each_type() -> None:
    cfg = _cfg()
    out = LazyConfig.apply_overrides(cfg, [
        "train.max_iter=3",
        "optimizer.lr=1e-4",
        "train.amp=false",
        "train.log=none",
        "optimizer.betas=[0.8, 0.9]",
        "+train.grid=[[1, 2], [3]]",
        "train.output_dir='my dir'",
        "+train.tag=\"3\"",
        "+data.path=/data/x.tar",
        "+data.expr=a=b",
        "model.hours=0.5",
    ])
    assert out is cfg
    assert cfg.train.max_iter == 3 and type(cfg.train.max_iter) is int
    assert cfg.optimizer.lr == 1e-4 and type(cfg.optimizer.lr) is float
    assert cfg.train.amp is False
    assert cfg.train.log is None
    assert isinstance(cfg.optimizer.betas, ListConfig) and list(cfg.optimizer.betas) == [0.8, 0.9]
    assert [list(x) for x in cfg.train.grid] == [[1, 2], [3]]
    assert cfg.train.output_dir == "my dir"
    assert cfg.train.tag == "3"
    assert cfg.data.path == "/data/x.tar" and cfg.data.expr == "a=b"
    assert instantiate(cfg.model) == timedelta(days=1, hours=0.5)


@pytest.mark.parametrize("override,message", [
    ("train.max_iter=abc", "override train.max_iter=abc: 'train.max_iter' takes an int, got a "
                           "string 'abc'; give e.g. train.max_iter="),
    ("train.max_iter=1.5", "'train.max_iter' takes an int, got a number 1.5"),
    ("train.max_iter=none", "'train.max_iter' takes an int, got none"),
    ("train.amp=1", "'train.amp' takes true or false, got an int 1"),
    ("optimizer.betas=abc", "'optimizer.betas' takes a list"),
])
def test_override_of_the_wrong_type_is_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        LazyConfig.apply_overrides(_cfg(), [override])
    assert message in str(err.value)


def test_override_checked_against_the_targets_signature() -> None:
    """Keys of a ``_target_`` node follow the target's annotations (AdamW: lr is a float)."""
    cfg = OmegaConf.create({"opt": {"_target_": "torch.optim.AdamW", "params": None, "lr": 0.1,
                                    "betas": [0.9, 0.99], "amsgrad": False}})
    LazyConfig.apply_overrides(cfg, ["opt.lr=1", "opt.betas=[0.8, 0.9]", "opt.amsgrad=true"])
    assert cfg.opt.lr == 1 and list(cfg.opt.betas) == [0.8, 0.9] and cfg.opt.amsgrad is True
    for override, message in [("opt.lr=abc", "'opt.lr' takes a number, got a string 'abc'"),
                              ("opt.lr=none", "'opt.lr' takes a number, got none"),
                              ("opt.betas=[0.9, x]", "takes a list of 2 (a number, a number)"),
                              ("opt.amsgrad=0", "takes true or false, got an int 0")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            LazyConfig.apply_overrides(cfg, [override])


def test_check_types_names_the_key_and_the_target() -> None:
    from cosmos.config.typecheck import check_types

    cfg = OmegaConf.create({"opt": {"_target_": "torch.optim.SGD", "params": None,
                                    "lr": "fast"}})
    with pytest.raises(ConfigError) as err:
        check_types(cfg)
    assert str(err.value).startswith("opt.lr: SGD() expects a number")
    cfg.opt.lr = 0.5
    check_types(cfg)  # None placeholders (params, injected by code) pass


def test_override_unknown_key_suggests() -> None:
    with pytest.raises(ConfigError) as err:
        LazyConfig.apply_overrides(_cfg(), ["optimizer.lrr=0.1"])
    assert str(err.value) == "unknown config key 'optimizer.lrr' (did you mean 'optimizer.lr'?)"
    with pytest.raises(ConfigError, match="unknown config key 'nothing.here.at_all'"):
        LazyConfig.apply_overrides(_cfg(), ["nothing.here.at_all=1"])


def test_override_plus_creates_and_sets() -> None:
    cfg = LazyConfig.apply_overrides(_cfg(), ["+new.key=1", "+optimizer.lr=0.3"])
    assert cfg.new.key == 1 and cfg.optimizer.lr == 0.3


def test_override_list_index_and_interpolation() -> None:
    cfg = LazyConfig.apply_overrides(_cfg(), ["optimizer.betas.1=0.5", "+train.lr=${optimizer.lr}"])
    assert list(cfg.optimizer.betas) == [0.9, 0.5]
    assert cfg.train.lr == 1e-3


def test_override_missing_equals() -> None:
    with pytest.raises(ConfigError, match="expected key.path=value"):
        LazyConfig.apply_overrides(_cfg(), ["train.max_iter"])


# ------------------------------------------------------------------ instantiate


def test_instantiate_nested_lists_partial_and_interpolation() -> None:
    cfg = DictConfig({
        "width": 32,
        "model": L(Model)(
            encoder=L(Encoder)(width="${...width}", depth=3),  # encoder -> model -> root
            heads=[L(Encoder)(width=1), L(f"{__name__}.Encoder")(width=2), 7],
            scale=0.5,
        ),
        "fn": L(add)(b=10, _partial_=True),
        "plain": {"a": 1},
    }, flags=FLAGS)
    model = instantiate(cfg.model)
    assert model == Model(encoder=Encoder(32, 3), heads=[Encoder(1), Encoder(2), 7], scale=0.5)
    fn = instantiate(cfg.fn)
    assert isinstance(fn, functools.partial) and fn(a=1) == 11
    assert instantiate(cfg.plain) is cfg.plain
    assert instantiate([L(Encoder)(width=5), 1]) == [Encoder(5), 1]
    assert instantiate(3) == 3


def test_instantiate_registry_target(tiny_loss: Any) -> None:
    assert instantiate(L("losses.test_tiny_loss")(temperature=0.1)) == TinyLoss(0.1)
    assert locate("losses.test_tiny_loss") is TinyLoss


def test_instantiate_unknown_registry_name_message(tiny_loss: Any) -> None:
    cfg = DictConfig({"model": L(Model)(encoder=L("losses.test_tiny_lost")())},
                     flags=FLAGS)
    with pytest.raises(UnknownComponentError) as err:
        instantiate(cfg.model)
    msg = str(err.value)
    assert msg.startswith("model.encoder: unknown losses 'test_tiny_lost'")
    assert "test_tiny_loss" in msg and "\n" not in msg
    assert isinstance(err.value, CosmosError)


def test_instantiate_unresolvable_target() -> None:
    cfg = DictConfig({"model": L(Model)(encoder=L("cosmos.losses_nope.Nope")())},
                     flags=FLAGS)
    with pytest.raises(ConfigError) as err:
        instantiate(cfg.model)
    assert str(err.value) == (
        "model.encoder: cannot find target 'cosmos.losses_nope.Nope' (no such module or attribute)"
    )
    with pytest.raises(ConfigError, match="cannot find target 'math.nope'"):
        instantiate(L("math.nope")())


def test_instantiate_bad_kwarg_names_key_path() -> None:
    cfg = DictConfig({"model": L(Model)(encoder=L(Encoder)(widht=3))}, flags=FLAGS)
    with pytest.raises(ConfigError) as err:
        instantiate(cfg.model)
    assert str(err.value) == "model.encoder: Encoder() got an unexpected keyword argument 'widht'"
    assert isinstance(err.value.__cause__, TypeError)
    with pytest.raises(ConfigError, match=r"model: add\(\) got an unexpected keyword argument 'c'"):
        instantiate(DictConfig({"model": L(add)(c=1, _partial_=True)},
                               flags=FLAGS).model)


def test_instantiate_constructor_errors_propagate_unchanged() -> None:
    with pytest.raises(ValueError, match="real bug"):
        instantiate(L(Exploding)(kind="value"))
    with pytest.raises(TypeError, match="real TypeError") as err:
        instantiate(L(Exploding)(kind="type"))
    assert not isinstance(err.value, ConfigError)


def test_instantiate_missing_interpolation_is_one_line() -> None:
    cfg = DictConfig({"model": L(Encoder)(width="${nope}")}, flags=FLAGS)
    with pytest.raises(ConfigError) as err:
        instantiate(cfg.model)
    assert str(err.value).startswith("model.width: ") and "\n" not in str(err.value)


# ------------------------------------------------------------------ save / to_py


def _saveable_cfg() -> DictConfig:
    return DictConfig({
        "width": 24,
        "model": L(Model)(
            encoder=L(Encoder)(width="${...width}"),
            heads=[L(Encoder)(width=1, depth=1), L("losses.test_tiny_loss")()],
        ),
        "fn": L(add)(b=2, _partial_=True),
        "delta": L(timedelta)(hours=1),
        "optimizer": {"lr": 1e-4, "betas": [0.9, 0.98], "name": "3", "off": None},
    }, flags=FLAGS)


def test_save_load_instantiate_round_trip(tmp_path: Path, tiny_loss: Any) -> None:
    cfg = _saveable_cfg()
    path = tmp_path / "out" / "config.yaml"
    LazyConfig.save(cfg, path)
    text = path.read_text()
    assert "${...width}" in text and f"{__name__}.Encoder" in text
    assert not os.path.exists(str(path) + ".tmp")
    loaded = LazyConfig.load(path)
    assert instantiate(loaded.model) == instantiate(cfg.model)
    assert instantiate(loaded.model).encoder == Encoder(width=24)
    assert instantiate(loaded.fn)(a=1) == 3
    assert instantiate(loaded.delta) == timedelta(hours=1)
    assert loaded.optimizer == cfg.optimizer and loaded.optimizer.lr == 1e-4
    assert cfg.model._target_ is Model  # the original config is not modified


def test_save_lambda_leaves_existing_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"keep: me\n")
    cfg = DictConfig({"model": {"fn": lambda x: x, "a": 1}}, flags=FLAGS)
    with pytest.raises(ConfigError) as err:
        LazyConfig.save(cfg, path)
    assert str(err.value) == (
        "cannot save config: key 'model.fn' holds <lambda> which is not importable; "
        "configs must be data plus targets"
    )
    assert path.read_bytes() == b"keep: me\n"
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_save_rejects_local_targets_and_objects(tmp_path: Path) -> None:
    class Local:
        pass

    with pytest.raises(ConfigError, match="key 'model._target_' holds .*Local which is not"):
        LazyConfig.save(DictConfig({"model": L(Local)()}, flags=FLAGS),
                        tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="key 'x.0' holds an object of type Exploding"):
        LazyConfig.save(DictConfig({"x": [object.__new__(Exploding)]}, flags=FLAGS),
                        tmp_path / "b.yaml")
    assert os.listdir(tmp_path) == []


def test_to_py_renders_targets(tiny_loss: Any) -> None:
    text = LazyConfig.to_py(_saveable_cfg())
    lines = text.strip().splitlines()
    assert lines[0] == "cfg.width = 24"
    assert lines[1].startswith(f"cfg.model = {__name__}.Model(encoder={__name__}.Encoder(")
    assert "'losses.test_tiny_loss'" not in lines[1] and "losses.test_tiny_loss()" in lines[1]
    assert lines[2] == f"cfg.fn = functools.partial({__name__}.add, b=2)"
    assert lines[4] == (
        "cfg.optimizer = dict(lr=0.0001, betas=[0.9, 0.98], name='3', off=None)"
    )


def test_errors_are_cosmos_errors() -> None:
    assert issubclass(ConfigError, CosmosError) and issubclass(UnknownComponentError, CosmosError)
