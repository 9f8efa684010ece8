"""Pretrained starts: ``train.init_checkpoint=openclip:PATH`` loads OpenCLIP weights into the
student's dual encoder (file or local-dir), the teacher starts as its copy, cross-attention
heads start fresh; mismatches are one line with exit code 2."""
from __future__ import annotations

import os

import open_clip
import pytest
import torch

from cosmos.config import LazyConfig, instantiate
from cosmos.engine.defaults import build_trainer
from cosmos.models.convert import load_openclip_state
from cosmos.models.openclip_dir import dual_encoder_from_cfg, preprocess_cfg, write_openclip_dir
from cosmos.utils.errors import CheckpointError, ConfigError
from tests.helpers import REPO, run_train

CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
EXAMPLE = os.path.join(REPO, "configs", "cosmos", "cosmos_vitb16_cc3m_from_openclip.py")
TINY = ["model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
        "model.student.encoder.text.width=32", "model.student.encoder.text.layers=1",
        "dataloader.train.num_workers=0", "dataloader.train.batch_size=2", "train.max_iter=1"]


def _openclip_like_config(quick_gelu: bool = False, width: int = 32) -> torch.nn.Module:
    """A random OpenCLIP model with the tiny config's tower shapes (64 px, patch 8, dim 96)."""
    torch.manual_seed(5)
    return open_clip.create_model(
        "ViT-B-32", pretrained=None, force_quick_gelu=quick_gelu, embed_dim=96,
        vision_cfg={"image_size": 64, "patch_size": 8, "width": width, "layers": 1,
                    "head_width": 8},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                  "layers": 1}).eval()


def _write_local_dir(reference: torch.nn.Module, path: str, quick_gelu: bool = False) -> str:
    """``reference`` as an OpenCLIP local-dir model (config + weights) at ``path``."""
    model = dual_encoder_from_cfg({"embed_dim": 96, "quick_gelu": quick_gelu, "vision_cfg": {
        "image_size": 64, "patch_size": 8, "width": 32, "layers": 1, "head_width": 8},
        "text_cfg": {"width": 32, "heads": 2, "layers": 1}})
    load_openclip_state(model, reference.state_dict(), "reference")
    write_openclip_dir(model, path, preprocess_cfg(64))
    return path


@pytest.fixture(scope="module")
def openclip_file(tmp_path_factory):
    model = _openclip_like_config()
    path = tmp_path_factory.mktemp("openclip") / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return model, str(path)


def _cfg(urls: str, out: str, init: str):
    cfg = LazyConfig.load(CONFIG)
    return LazyConfig.apply_overrides(cfg, [*TINY, f"dataloader.train.urls={urls}",
                                            f"train.output_dir={out}",
                                            f"train.init_checkpoint={init}"])


def _assert_same_embeddings(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a red circle", "two small blue squares"])
    with torch.no_grad():
        assert (ours.encode_image(images) - theirs.encode_image(images)).abs().max() < 1e-5
        assert (ours.encode_text(tokens) - theirs.encode_text(tokens)).abs().max() < 1e-5


@pytest.mark.parametrize("form", ["file", "local-dir"])
def test_student_starts_as_openclip_teacher_follows_heads_fresh(
        form, openclip_file, synthetic_shards, tmp_path) -> None:
    reference, path = openclip_file
    if form == "local-dir":
        path = _write_local_dir(reference, str(tmp_path / "exported"))
    torch.manual_seed(0)
    fresh = instantiate(_cfg(synthetic_shards, str(tmp_path / "x"), "").model)
    torch.manual_seed(0)
    trainer = build_trainer(_cfg(synthetic_shards, str(tmp_path / "run"), f"openclip:{path}"),
                            str(tmp_path / "run"))
    meta = trainer.model
    assert trainer.iter == 0
    _assert_same_embeddings(meta.student.encoder.eval(), reference)
    student, teacher = meta.student.state_dict(), meta.teacher.state_dict()
    assert all(torch.equal(student[k], teacher[k]) for k in student)  # teacher = loaded student
    heads = [k for k in student if not k.startswith("encoder.")]
    assert heads and all(torch.equal(student[k], fresh.student.state_dict()[k]) for k in heads)


@pytest.mark.slow
def test_mismatching_openclip_file_is_one_line_exit_2(synthetic_shards, tmp_path) -> None:
    wide = tmp_path / "wide.bin"
    torch.save(_openclip_like_config(width=64).state_dict(), wide)
    out = tmp_path / "run"
    res = run_train(["--config-file", CONFIG, *TINY, f"dataloader.train.urls={synthetic_shards}",
                     f"train.output_dir={out}", f"train.init_checkpoint=openclip:{wide}"])
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(wide) in lines[0]
    assert "shape mismatch: visual.class_embedding is (64,) in the checkpoint but (32,)" in lines[0]
    assert not (out / "checkpoints").exists() or not os.listdir(out / "checkpoints")


def test_quick_gelu_mismatch_and_unknown_scheme(tmp_path) -> None:
    from cosmos.engine.pretrained import load_init_checkpoint

    _write_local_dir(_openclip_like_config(quick_gelu=True), str(tmp_path / "quick"), True)
    meta = instantiate(LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY).model)
    with pytest.raises(CheckpointError, match="quick_gelu=True but the config's student"):
        load_init_checkpoint(meta, f"openclip:{tmp_path / 'quick'}")
    with pytest.raises(ConfigError, match="unknown scheme 'hf' .* known: openclip:PATH, "
                                          "official:PATH, or a toolkit checkpoint PATH"):
        load_init_checkpoint(meta, "hf:laion/CLIP")


def test_example_config_keeps_interpolations() -> None:
    cfg = LazyConfig.load(EXAMPLE)
    assert cfg.train.init_checkpoint.startswith("openclip:")
    student = cfg.model.student
    assert student.image_token_mapping.in_dim == student.encoder.visual.width == 768
    assert student.text_cross_pooler.d_model == 512


def test_official_cosmos_start_loads_student_teacher_and_heads(tmp_path) -> None:
    from cosmos.engine.pretrained import load_init_checkpoint
    from cosmos.models import to_official_cosmos

    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    torch.manual_seed(1)
    source = instantiate(cfg.model)
    with torch.no_grad():
        for p in source.teacher.parameters():
            p.add_(0.5)  # a teacher that differs from the student
    path = tmp_path / "epoch_2.pt"
    torch.save({"epoch": 2, "student": {f"module.{k}": v for k, v in
                                        to_official_cosmos(source.student).items()},
                "teacher": to_official_cosmos(source.teacher)}, path)
    torch.manual_seed(2)
    target = instantiate(cfg.model)
    load_init_checkpoint(target, f"official:{path}")
    for name in ("student", "teacher"):
        ours, theirs = getattr(target, name).state_dict(), getattr(source, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
