"""tools/visualize_attention.py and cosmos.visualization.attention: the weights are the model's,
the figures are drawn for COSMOS (cross-attention) and CLIP (fallback) runs, errors are one line."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos.data.synthetic import SyntheticScenes
from cosmos.models import build_cosmos_student, to_official_cosmos
from cosmos.visualization.attention import (
    CROSS, FALLBACK, IMAGE_ROW_PX, WIDTH_PX, apply_attention, attention_weights, compute_attention,
    load_for_visualization, pooler_weights, render_attention)
from tests.helpers import REPO, TRAIN_NET, tiny_overrides

TOOL = os.path.join(REPO, "tools", "visualize_attention.py")
COSMOS_CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
CLIP_CONFIG = os.path.join(REPO, "configs", "clip", "clip_tiny_synthetic.py")
COSMOS_TINY = [  # 32 px images, 8 px patches: a 4x4 grid
    "model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
    "model.student.encoder.visual.image_size=32", "model.student.encoder.text.width=32",
    "model.student.encoder.text.layers=1", "dataloader.train.image_transform.global_size=32",
    "dataloader.train.image_transform.local_size=16", "dataloader.train.batch_size=2",
    "dataloader.train.num_workers=0", "evaluation.synthetic.dataset.num_samples=4",
    "evaluation.synthetic.dataset.image_size=32", "evaluation.synthetic.transform.size=32",
    "evaluation.segmentation=null", "train.max_iter=2"]
CAPTION = "A large red circle in the center. A small blue star at the top left."


def _env():
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    env.pop("COSMOS_TRACEBACK", None)
    return env


def _start_tool(args, out_dir: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, TOOL, *args, "--out", out_dir], cwd=REPO,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_shards):
    """A 2-step COSMOS run and a 2-step CLIP run, trained side by side; then the command-line
    tool starts on the COSMOS checkpoint in the background (its test comes last, so the other
    tests use the second core meanwhile)."""
    root = tmp_path_factory.mktemp("attention_runs")
    cosmos, clip = str(root / "cosmos"), str(root / "clip")
    jobs = [
        [COSMOS_CONFIG, f"train.output_dir={cosmos}", f"dataloader.train.urls={synthetic_shards}",
         *COSMOS_TINY],
        [CLIP_CONFIG, *tiny_overrides(clip, synthetic_shards), "model.model.visual.patch_size=8",
         "evaluation.segmentation=null"],
    ]
    procs = [subprocess.Popen([sys.executable, TRAIN_NET, "--config-file", *args], cwd=REPO,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for args in jobs]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    image = str(root / "scene.png")
    SyntheticScenes(num_samples=1, image_size=32, split="val")[0]["image"].save(image)
    cli_out = str(root / "cli")
    cli = _start_tool(["--checkpoint", _ckpt(cosmos), "--image", image, "--caption", CAPTION,
                       "--heads", "all"], cli_out)
    yield {"cosmos": cosmos, "clip": clip, "image": image, "cli": cli, "cli_out": cli_out}
    if cli.poll() is None:
        cli.kill()
        cli.communicate()


def _ckpt(run: str) -> str:
    return os.path.join(run, "checkpoints", "model_0000002.pth")


def _tool():
    spec = importlib.util.spec_from_file_location("visualize_attention_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_in_process(argv, capsys):
    """The tool's main under run_cli, as the command line runs it → (exit code, stdout, stderr)."""
    from cosmos.engine.defaults import run_cli

    tool = _tool()
    try:
        run_cli(tool.main, tool.parse_args(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _caption_words(caption: str):
    return re.findall(r"[a-z]+|[^\sa-z]", caption.lower())


def _check_weights(result, caption: str) -> None:
    patches = np.array(result["patches"])
    words = np.array([w["weight"] for w in result["words"]])
    for weights in (patches, words):
        assert weights.min() == 0.0 and weights.max() == 1.0 and np.isfinite(weights).all()
    assert [w["word"] for w in result["words"]] == _caption_words(caption)
    raw = np.array(result["patches_raw"])
    assert (raw >= 0).all() and raw.sum() <= 1 + 1e-6


def _check_png(path: str, size=None) -> Image.Image:
    assert os.path.isfile(path), path
    image = Image.open(path)
    if size is not None:
        assert image.size == size
    assert image.size[0] == WIDTH_PX and image.size[1] % 25 == 0
    assert np.asarray(image.convert("L"), dtype=np.float32).std() > 10  # not blank
    return image


# ----------------------------------------------------------------------------- the weights
def test_weights_reproduce_the_cross_poolers_outputs() -> None:
    torch.manual_seed(0)
    student = build_cosmos_student("tiny-16").eval()
    query, tokens = torch.randn(3, 32), torch.randn(3, 7, 32)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 4:], mask[2, 6:] = True, True
    for pooler in (student.image_cross_pooler, student.text_cross_pooler):
        for key_mask in (None, mask):
            with torch.no_grad():
                weights = pooler_weights(pooler, query, tokens, key_mask)  # (B, H, Lk)
                rebuilt = apply_attention(pooler.attn, weights[:, :, None], pooler.ln_k(tokens))
                expected = pooler(query, tokens, key_mask)
            assert weights.shape == (3, 8, 7)
            assert torch.allclose(weights.sum(-1), torch.ones(3, 8), atol=1e-6)
            assert torch.allclose(rebuilt[:, 0], expected, atol=1e-5)
            if key_mask is not None:
                assert (weights[0, :, 4:] == 0).all()


def test_fallback_weights_are_the_last_blocks_own() -> None:
    """The class-token / EOT-token rows reproduce the last self-attention block's outputs, and
    compute_attention reports exactly those rows."""
    torch.manual_seed(0)
    encoder = build_cosmos_student("tiny-16").encoder.eval()
    images = torch.randn(3, 32, 32)
    ids = torch.tensor([49406, 320, 736, 7117, 49407, 0, 0])
    seen = {}

    def hook(name):
        def record(module, args, kwargs, output):
            seen[name] = (args[0], kwargs.get("is_causal", False), output)
        return record

    handles = [tower.transformer.resblocks[-1].attn.register_forward_hook(hook(n), with_kwargs=True)
               for n, tower in (("visual", encoder.visual), ("text", encoder.text))]
    maps = compute_attention(encoder, images, ids)
    for handle in handles:
        handle.remove()
    assert maps.source == FALLBACK and maps.patches.shape == (4, 2, 2)
    assert maps.tokens.shape == (4, 7)
    for name, row in (("visual", 0), ("text", 4)):
        x, causal, output = seen[name]
        attn = (encoder.visual if name == "visual" else encoder.text).transformer.resblocks[-1].attn
        assert causal == (name == "text")
        keep = torch.arange(x.shape[1]) > row if causal else None
        with torch.no_grad():
            weights = attention_weights(attn, x[:, row:row + 1], x,
                                        None if keep is None else keep[None])
            rebuilt = apply_attention(attn, weights, x)
        assert torch.allclose(rebuilt[:, 0], output[:, row], atol=1e-5)
        reported = maps.patches.flatten(1) if name == "visual" else maps.tokens
        expected = weights[0, :, 0, 1:] if name == "visual" else weights[0, :, 0]
        assert torch.allclose(reported, expected, atol=1e-6)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_api_on_student_and_teacher_and_exported_encoder(runs, tmp_path) -> None:
    model, cfg = load_for_visualization(_ckpt(runs["cosmos"]))  # config.yaml of the run
    assert cfg is not None and not model.training
    scene = SyntheticScenes(num_samples=1, image_size=32, split="val")[0]
    caption = " ".join(scene["captions"]["long"])
    for encoder in ("student", "teacher"):
        result = render_attention(model, scene["image"], caption, str(tmp_path / encoder),
                                  encoder=encoder, prefix="p")
        assert result["source"] == CROSS and result["encoder"] == encoder
        _check_weights(result, caption)
        assert set(result["files"]) == {"image", "words", "figure", "json"}
        assert json.load(open(tmp_path / encoder / "p.json"))["words"] == result["words"]
    exported, _ = load_for_visualization(os.path.join(runs["cosmos"], "student.pth"))
    result = render_attention(exported, scene["image"], CAPTION, str(tmp_path / "exported"))
    assert result["source"] == FALLBACK and "exported encoder" in result["note"]
    _check_weights(result, CAPTION)


@pytest.mark.slow
def test_clip_run_falls_back_to_last_layer_attention(runs, tmp_path, capsys) -> None:
    out = tmp_path / "clip"
    code, stdout, stderr = _run_in_process(
        ["--checkpoint", _ckpt(runs["clip"]), "--image", runs["image"], "--caption", CAPTION,
         "--out", str(out)], capsys)
    assert code == 0, stderr
    assert "last-layer attention" in stdout
    result = json.load(open(out / "attention.json"))
    assert result["source"] == FALLBACK and "no cross-attention" in result["note"]
    assert result["grid"] == [4, 4]
    _check_weights(result, CAPTION)
    assert 0 < result["mass_on_patches"] < 1  # the class token's weight on itself is left out
    for name in ("attention_image.png", "attention_words.png", "attention.png"):
        _check_png(str(out / name))


def test_official_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    student, teacher = build_cosmos_student("tiny-16"), build_cosmos_student("tiny-16")
    path = tmp_path / "epoch_1.pt"
    torch.save({"student": to_official_cosmos(student), "teacher": to_official_cosmos(teacher)},
               path)
    model, cfg = load_for_visualization(str(path), arch="tiny-16")
    assert cfg is None
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    result = render_attention(model, image, "a red circle", str(tmp_path / "out"),
                              encoder="teacher")
    assert result["source"] == CROSS and result["grid"] == [2, 2]
    assert [w["word"] for w in result["words"]] == ["a", "red", "circle"]


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys) -> None:
    ckpt, image = _ckpt(runs["cosmos"]), runs["image"]
    cases = [
        (["--image", str(tmp_path / "missing.png")], "image not found"),
        (["--config-file", CLIP_CONFIG], "does not fit the model"),     # other architecture
        (["--config-file", COSMOS_CONFIG], "size mismatch"),            # other widths
        (["--caption", "   "], "has no words"),
    ]
    for extra, message in cases:
        argv = ["--checkpoint", ckpt, "--image", image, "--caption", CAPTION,
                "--out", str(tmp_path / "x"), *extra]
        code, _, stderr = _run_in_process(argv, capsys)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), stderr
        assert message in lines[0]
    code, _, stderr = _run_in_process(["--checkpoint", _ckpt(runs["clip"]), "--image", image,
                                       "--caption", CAPTION, "--encoder", "teacher",
                                       "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "unknown encoder 'teacher'" in stderr


@pytest.mark.slow
def test_tool_on_a_cosmos_training_checkpoint(runs) -> None:
    """The command line, started by the fixture: --heads all on the training checkpoint."""
    stdout, stderr = runs["cli"].communicate(timeout=300)
    assert runs["cli"].returncode == 0, stderr[-3000:]
    assert "most attended words:" in stdout
    out = Path(runs["cli_out"])
    result = json.load(open(out / "attention.json"))
    assert result["source"] == CROSS and result["encoder"] == "student"
    assert result["grid"] == [4, 4] and result["image_size"] == [32, 32]
    _check_weights(result, CAPTION)
    per_head = result["per_head"]
    assert len(per_head["patches"]) == result["num_heads"]["image"] == 4
    assert all(len(w) == len(result["words"]) for w in per_head["words"])
    _check_png(str(out / "attention_image.png"), (WIDTH_PX, IMAGE_ROW_PX))
    words = _check_png(str(out / "attention_words.png"))
    figure = _check_png(str(out / "attention.png"))
    assert figure.size[1] > IMAGE_ROW_PX + words.size[1] - 50
    _check_png(str(out / "attention_heads.png"))
