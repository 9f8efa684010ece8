"""tools/export.py and the OpenCLIP local-dir format: what OpenCLIP loads computes the toolkit's
embeddings (ViT-B presets, a trained tiny run), declares the toolkit's evaluation preprocessing,
and bad requests write nothing."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from cosmos.data.transforms import EvalCrop
from cosmos.engine.export import load_run_encoder
from cosmos.models import DualEncoder, build_dual_encoder
from cosmos.models.openclip_dir import (CONFIG_NAME, SAFETENSORS_NAME, TORCH_NAME,
                                        dual_encoder_from_cfg, openclip_model_cfg,
                                        preprocess_cfg, write_openclip_dir)
from cosmos.models.text import TextTransformer
from cosmos.utils.errors import CheckpointError
from tests.helpers import REPO, run_train

ATOL = 1e-5
COSMOS_CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
CLIP_CONFIG = os.path.join(REPO, "configs", "clip", "clip_tiny_synthetic.py")
COSMOS_TINY = ["model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
               "model.student.encoder.text.width=32", "model.student.encoder.text.layers=1"]
CLIP_TINY = ["model.model.visual.width=32", "model.model.visual.layers=1",
             "model.model.text.width=32", "model.model.text.layers=1"]
CAPTIONS = ["a large red circle and a small blue square", "two green triangles"]


def export(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    env.pop("COSMOS_TRACEBACK", None)
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def export_in_process(capsys, *args: str):
    """(exit code, stderr) of tools/export.py run in this process (fast for error cases)."""
    import importlib.util

    from cosmos.engine.defaults import run_cli

    spec = importlib.util.spec_from_file_location("export_tool", os.path.join(REPO, "tools",
                                                                              "export.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    capsys.readouterr()
    try:
        run_cli(tool.main, tool.parse_args(list(args)))
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _embeddings(model: torch.nn.Module, image_size: int, tokenizer):
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokenizer(CAPTIONS))


def _assert_close(ours, theirs) -> None:
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and (a - b).abs().max().item() < ATOL


def _photo() -> Image.Image:
    """A non-square RGB image, so resize and centre crop both matter."""
    pixels = np.random.RandomState(0).randint(0, 256, size=(97, 131, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-B-32"])
def test_vitb_presets_load_in_openclip_with_equal_embeddings(arch, tmp_path) -> None:
    torch.manual_seed(0)
    ours = build_dual_encoder(arch).eval()
    out = str(tmp_path / arch)
    write_openclip_dir(ours, out, preprocess_cfg(224))
    assert sorted(os.listdir(out)) == sorted([CONFIG_NAME, SAFETENSORS_NAME, TORCH_NAME])
    model_cfg = json.load(open(os.path.join(out, CONFIG_NAME)))["model_cfg"]
    builtin = open_clip.get_model_config(arch)  # the same architecture as OpenCLIP's own json
    assert model_cfg["vision_cfg"] == {**builtin["vision_cfg"], "mlp_ratio": 4.0,
                                       "head_width": 64}
    assert {k: model_cfg["text_cfg"][k] for k in builtin["text_cfg"]} == builtin["text_cfg"]
    assert model_cfg["embed_dim"] == builtin["embed_dim"] and model_cfg["quick_gelu"] is False
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    expected = _embeddings(ours, 224, tokenizer)
    del ours
    theirs, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    _assert_close(expected, _embeddings(theirs.eval(), 224, tokenizer))
    assert torch.equal(preprocess(_photo()), EvalCrop(224)(_photo())["images"])
    del theirs
    gc.collect()
    if arch == "ViT-B-16":  # the plain state dict for pretrained= (once: it is slow on CPU)
        plain = open_clip.create_model(arch, pretrained=os.path.join(out, TORCH_NAME)).eval()
        _assert_close(expected, _embeddings(plain, 224, tokenizer))


@pytest.mark.parametrize("arch", ["tiny-16", "tiny-32-quickgelu"])
def test_tiny_presets_and_quick_gelu_round_trip(arch, tmp_path) -> None:
    """QuickGELU is declared in the config OpenCLIP reads, so its towers compute the same."""
    torch.manual_seed(0)
    ours = build_dual_encoder(arch).eval()
    out = str(tmp_path / arch)
    write_openclip_dir(ours, out, preprocess_cfg(32))
    config = json.load(open(os.path.join(out, CONFIG_NAME)))
    assert config["model_cfg"]["quick_gelu"] is arch.endswith("quickgelu")
    theirs, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    _assert_close(_embeddings(ours, 32, tokenizer), _embeddings(theirs.eval(), 32, tokenizer))
    gelu = dual_encoder_from_cfg({**config["model_cfg"], "quick_gelu": False})
    gelu.load_state_dict(ours.state_dict())
    differs = (_embeddings(gelu, 32, tokenizer)[1] - _embeddings(ours, 32, tokenizer)[1]).abs()
    assert bool(differs.max() > 1e-4) == arch.endswith("quickgelu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_shards):
    """A 2-step COSMOS run and a 1-step CLIP run of the tiny synthetic configs."""
    out = {}
    for name, config, tiny, steps in (("cosmos", COSMOS_CONFIG, COSMOS_TINY, 2),
                                      ("clip", CLIP_CONFIG, CLIP_TINY, 1)):
        run_dir = str(tmp_path_factory.mktemp(name))
        res = run_train(["--config-file", config, f"train.output_dir={run_dir}",
                         f"train.max_iter={steps}", f"dataloader.train.urls={synthetic_shards}",
                         "dataloader.train.batch_size=2", "dataloader.train.num_workers=0",
                         "evaluation.synthetic.dataset.num_samples=4",
                         "evaluation.segmentation.dataset.num_samples=2", *tiny])
        assert res.returncode == 0, res.stderr[-3000:]
        out[name] = run_dir
    return out


@pytest.mark.slow
@pytest.mark.parametrize("encoder,source", [("student", "run"), ("teacher", "checkpoint")])
def test_trained_tiny_run_exports(encoder, source, runs, tmp_path) -> None:
    run_dir = runs["cosmos"]
    src = run_dir if source == "run" else os.path.join(run_dir, "checkpoints", "model_0000002.pth")
    out = str(tmp_path / "exported")
    res = export(src, "--encoder", encoder, "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"exported the {encoder}" in res.stdout
    config = json.load(open(os.path.join(out, CONFIG_NAME)))
    assert config["model_cfg"]["vision_cfg"]["image_size"] == 64
    assert config["cosmos"]["encoder"] == encoder
    theirs, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    ours, _, _ = load_run_encoder(src, encoder)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    _assert_close(_embeddings(ours, 64, tokenizer), _embeddings(theirs.eval(), 64, tokenizer))
    # the teacher (EMA) differs from the student after training: the right encoder was exported
    other, _, _ = load_run_encoder(src, "teacher" if encoder == "student" else "student")
    gap = _embeddings(other, 64, tokenizer)[0] - _embeddings(ours, 64, tokenizer)[0]
    assert gap.abs().max() > 1e-6
    # the toolkit evaluates these runs with image_crops.clip_eval(size=64)
    assert torch.equal(preprocess(_photo()), EvalCrop(64)(_photo())["images"])
    assert config["preprocess_cfg"]["interpolation"] == "bicubic"
    assert config["preprocess_cfg"]["resize_mode"] == "shortest"


@pytest.mark.slow
def test_bad_exports_write_nothing(runs, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("COSMOS_TRACEBACK", raising=False)
    out = tmp_path / "out"
    code, err = export_in_process(capsys, runs["clip"], "--encoder", "teacher", "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {runs['clip']}: the run (CLIP) has no teacher encoder; "
                          "it has student")
    assert not out.exists() and os.listdir(tmp_path) == []
    exported = os.path.join(runs["cosmos"], "student.pth")
    code, err = export_in_process(capsys, exported, "--encoder", "teacher", "--out", str(out))
    assert code == 2 and "holds the student encoder, not the teacher" in err
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = export_in_process(capsys, runs["clip"], "--out", str(out))
    assert code == 2 and "is not empty; choose another --out or pass --overwrite" in err
    assert os.listdir(out) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
    code, err = export_in_process(capsys, runs["clip"], "--out", str(out), "--overwrite")
    assert code == 0 and sorted(os.listdir(out)) == sorted(
        [CONFIG_NAME, SAFETENSORS_NAME, TORCH_NAME])
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary directory left behind


def test_non_openclip_towers_are_refused() -> None:
    from cosmos.models.timm_tower import TimmImageTower

    text = TextTransformer(context_length=8, vocab_size=64, width=32, layers=1, heads=2,
                           output_dim=16)
    timm_model = DualEncoder(TimmImageTower("vit_tiny_patch16_224", image_size=32, output_dim=16),
                             text)
    with pytest.raises(CheckpointError, match="the image tower is a TimmImageTower; OpenCLIP's "
                                              "CLIP layout needs the toolkit's VisionTransformer"):
        openclip_model_cfg(timm_model)
    with pytest.raises(CheckpointError, match="vision_cfg.timm_model_name='vit_base"):
        dual_encoder_from_cfg({"embed_dim": 16, "text_cfg": {},
                               "vision_cfg": {"timm_model_name": "vit_base_patch16_224"}})
