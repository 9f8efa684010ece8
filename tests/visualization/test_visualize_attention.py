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
from cosmos.engine.inference import load_model_for_inference
from cosmos.models import build_cosmos_student, to_official_cosmos
from cosmos.visualization.attention import (
    CROSS, FALLBACK, IMAGE_ROW_PX, WIDTH_PX, compute_attention, pooler_weights, render_attention)
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
                rebuilt = pooler.attn.apply_weights(weights[:, :, None], pooler.ln_k(tokens))
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
            weights = attn.attention_weights(x[:, row:row + 1], x,
                                             None if keep is None else keep[None])
            rebuilt = attn.apply_weights(weights, x)
        assert torch.allclose(rebuilt[:, 0], output[:, row], atol=1e-5)
        reported = maps.patches.flatten(1) if name == "visual" else maps.tokens
        expected = weights[0, :, 0, 1:] if name == "visual" else weights[0, :, 0]
        assert torch.allclose(reported, expected, atol=1e-6)


# Maps of build_cosmos_student("tiny-16") (seed 0) for a fixed image and caption, as computed by
# the visualiser before it used MultiheadAttention.attention_weights: (heads, 2x2 patches) and
# (heads, 8 caption positions).
REFERENCE = {
    CROSS: ([[0.274601, 0.257519, 0.236312, 0.231568], [0.257544, 0.24509, 0.256563, 0.240803],
             [0.209707, 0.226948, 0.244138, 0.319206], [0.243867, 0.21008, 0.286311, 0.259742],
             [0.256659, 0.255948, 0.245916, 0.241477], [0.177045, 0.170555, 0.292376, 0.360023],
             [0.268234, 0.264413, 0.247385, 0.219967], [0.257014, 0.221617, 0.262917, 0.258452]],
            [[0.146147, 0.17188, 0.123327, 0.112448, 0.096354, 0.143791, 0.102932, 0.10312],
             [0.16555, 0.100021, 0.150104, 0.105362, 0.123479, 0.084846, 0.118153, 0.152485],
             [0.094173, 0.143018, 0.119627, 0.116812, 0.095182, 0.150217, 0.122647, 0.158325],
             [0.092598, 0.104914, 0.076641, 0.0691, 0.119152, 0.164342, 0.185986, 0.187266],
             [0.121428, 0.133617, 0.150711, 0.145641, 0.116337, 0.112022, 0.11448, 0.105764],
             [0.103298, 0.119178, 0.123433, 0.124037, 0.142894, 0.131468, 0.110008, 0.145684],
             [0.118865, 0.109454, 0.134919, 0.122327, 0.127839, 0.123507, 0.130341, 0.132749],
             [0.089581, 0.131531, 0.15863, 0.170373, 0.124823, 0.120933, 0.094183, 0.109947]]),
    FALLBACK: ([[0.162339, 0.272076, 0.142456, 0.136767], [0.182683, 0.134638, 0.157079, 0.185455],
                [0.199699, 0.181573, 0.223559, 0.209033], [0.164298, 0.216092, 0.159172, 0.188755]],
               [[0.110176, 0.072621, 0.473481, 0.228579, 0.052205, 0.062939, 0.0, 0.0],
                [0.027444, 0.130898, 0.187853, 0.358878, 0.173102, 0.121825, 0.0, 0.0],
                [0.100014, 0.250187, 0.215503, 0.220361, 0.150573, 0.063363, 0.0, 0.0],
                [0.074556, 0.164042, 0.150858, 0.140352, 0.304536, 0.165656, 0.0, 0.0]]),
}


def test_maps_equal_the_reference_values() -> None:
    torch.manual_seed(0)
    student = build_cosmos_student("tiny-16").eval()
    image = torch.linspace(-2, 2, 3 * 32 * 32).reshape(3, 32, 32).sin()
    ids = torch.tensor([49406, 320, 736, 7117, 269, 49407, 0, 0])  # "a red circle ."
    for model, source in ((student, CROSS), (student.encoder, FALLBACK)):
        maps = compute_attention(model, image, ids)
        patches, tokens = REFERENCE[source]
        assert maps.source == source
        assert torch.allclose(maps.patches.flatten(1), torch.tensor(patches), atol=2e-6)
        assert torch.allclose(maps.tokens, torch.tensor(tokens), atol=2e-6)
    assert (maps.tokens[:, 6:] == 0).all()  # the EOT row of a causal tower sees no padding


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_api_on_student_and_teacher_and_exported_encoder(runs, tmp_path) -> None:
    loaded = load_model_for_inference(_ckpt(runs["cosmos"]))  # config.yaml of the run
    model, cfg = loaded.model, loaded.cfg
    assert cfg is not None and not model.training and loaded.step == 2
    scene = SyntheticScenes(num_samples=1, image_size=32, split="val")[0]
    caption = " ".join(scene["captions"]["long"])
    for encoder in ("student", "teacher"):
        result = render_attention(model, scene["image"], caption, str(tmp_path / encoder),
                                  encoder=encoder, prefix="p")
        assert result["source"] == CROSS and result["encoder"] == encoder
        _check_weights(result, caption)
        assert set(result["files"]) == {"image", "words", "figure", "json"}
        assert json.load(open(tmp_path / encoder / "p.json"))["words"] == result["words"]
    exported = load_model_for_inference(os.path.join(runs["cosmos"], "student.pth")).model
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
    loaded = load_model_for_inference(str(path), arch="tiny-16")
    model, cfg = loaded.model, loaded.cfg
    assert cfg is None and sorted(model.encoders()) == ["student", "teacher"]
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
        # other architecture: the checkpoint's metadata names both
        (["--config-file", CLIP_CONFIG], "holds a COSMOS, but this config builds a CLIP"),
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
