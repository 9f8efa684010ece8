"""cosmos.engine.inference.load_model_for_inference: what each kind of checkpoint loads as, the
weights it holds, and one-line errors (exit 2 through the tools)."""
from __future__ import annotations

import os

import pytest
import torch

from cosmos.checkpoint import Checkpointer
from cosmos.config import LazyConfig, instantiate
from cosmos.engine.defaults import run_cli
from cosmos.engine.inference import find_config, load_model_for_inference
from cosmos.engine.pretrained import Baseline
from cosmos.models import build_cosmos_student, to_official_cosmos
from cosmos.utils.errors import CheckpointError, ConfigError, CosmosError
from tests.helpers import REPO

COSMOS_CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
TINY = ["model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
        "model.student.encoder.visual.image_size=32", "model.student.encoder.text.width=32",
        "model.student.encoder.text.layers=1"]

pytestmark = pytest.mark.slow  # a module fixture trains a tiny run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as training leaves it: config.yaml, checkpoints/ (steps 3 and 7, the
    pointer on 7), an exported teacher.pth; every weight distinct (seeded noise)."""
    root = tmp_path_factory.mktemp("run")
    cfg = LazyConfig.apply_overrides(LazyConfig.load(COSMOS_CONFIG), TINY)
    LazyConfig.save(cfg, str(root / "config.yaml"))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    checkpointer = Checkpointer(str(root / "checkpoints"))
    for step in (3, 7):
        checkpointer.save(step, {"model": model.state_dict(), "iter": step})
    torch.save(model.encoders()["teacher"].state_dict(), root / "teacher.pth")
    return str(root), model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_directory_loads_its_latest_checkpoint(run_dir) -> None:
    root, trained = run_dir
    loaded = load_model_for_inference(root)
    assert loaded.checkpoint == os.path.join(root, "checkpoints", "model_0000007.pth")
    assert loaded.step == 7 and loaded.which == "student" and loaded.cfg is not None
    assert not loaded.model.training and _same_weights(loaded.model, trained)
    assert sorted(loaded.model.encoders()) == ["student", "teacher"]
    assert find_config(loaded.checkpoint) == os.path.join(root, "config.yaml")
    teacher = load_model_for_inference(root, which="teacher")
    assert teacher.which == "teacher"


def test_exported_teacher_is_named_after_its_file(run_dir) -> None:
    root, trained = run_dir
    loaded = load_model_for_inference(os.path.join(root, "teacher.pth"))
    assert isinstance(loaded.model, Baseline) and loaded.which == "teacher"
    assert list(loaded.model.encoders()) == ["teacher"] and loaded.step == 0
    assert _same_weights(loaded.model.encoders()["teacher"], trained.encoders()["teacher"])
    source = loaded.model.attention_sources()["teacher"]
    assert source.cross is None and "exported encoder" in source.note
    expected = r"unknown encoder 'student'; this model has \['teacher'\]"
    with pytest.raises(CosmosError, match=expected):
        load_model_for_inference(os.path.join(root, "teacher.pth"), which="student")


def test_official_checkpoint_keeps_its_cross_poolers(tmp_path) -> None:
    torch.manual_seed(0)
    student, teacher = build_cosmos_student("tiny-16"), build_cosmos_student("tiny-16")
    path = tmp_path / "epoch_1.pt"
    torch.save({"student": to_official_cosmos(student), "teacher": to_official_cosmos(teacher)},
               path)
    for spec in (str(path), f"official:{path}"):
        loaded = load_model_for_inference(spec, arch="tiny-16")
        assert loaded.cfg is None and loaded.checkpoint == str(path)
        sources = loaded.model.attention_sources()
        assert _same_weights(sources["teacher"].cross, teacher)
        assert _same_weights(loaded.model.encoders()["student"], student.encoder)
    with pytest.raises(CheckpointError, match="--arch picks another"):
        load_model_for_inference(str(path), arch="ViT-B-16")


def test_bad_inputs_are_one_clear_error(tmp_path, run_dir) -> None:
    root, trained = run_dir
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        load_model_for_inference(str(empty))
    lone = tmp_path / "model.pth"
    torch.save({"model": trained.state_dict()}, lone)
    with pytest.raises(ConfigError, match="no config.yaml found .* pass --config-file"):
        load_model_for_inference(str(lone))
    with pytest.raises(ConfigError, match="unknown scheme 'hf'"):
        load_model_for_inference("hf:org/model")


def test_tool_errors_exit_2_with_one_line(tmp_path, capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "visualize_attention_tool", os.path.join(REPO, "tools", "visualize_attention.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    image = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (32, 32)).save(image)
    (tmp_path / "empty_run").mkdir()
    args = tool.parse_args(["--checkpoint", str(tmp_path / "empty_run"), "--image", str(image),
                            "--caption", "a circle", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main, args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {tmp_path / 'empty_run'} has no checkpoint")
    assert not (tmp_path / "out").exists()
