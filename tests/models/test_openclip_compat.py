"""OpenCLIP compatibility: presets, key mapping both ways, file formats, one-line load errors.

Random-init OpenCLIP models (nothing is downloaded) are built once per arch and reused; file
formats and QuickGELU are checked on tiny OpenCLIP models shaped like our ``tiny-*`` presets.
"""
from __future__ import annotations

import copy
import functools
import re
from typing import Dict, Tuple

import open_clip
import pytest
import torch
from open_clip.model import convert_to_custom_text_state_dict
from safetensors.torch import save_file

from cosmos.layers.mlp import Mlp
from cosmos.models import (DualEncoder, build_dual_encoder, build_tower, from_openclip, preset,
                           read_state_dict, to_openclip)
from cosmos.utils.errors import CheckpointError, CosmosError

ARCHS = ["ViT-B-16", "ViT-B-32"]
OTHER = {"ViT-B-16": "ViT-B-32", "ViT-B-32": "ViT-B-16"}
CAPTIONS = ["a photo of a cat sitting on a red sofa", "two dogs playing in the snow"]
ATOL = 1e-5


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=None)
def _openclip(arch: str) -> torch.nn.Module:
    """A random-init fp32 OpenCLIP model in eval mode (seeded per arch)."""
    torch.manual_seed(0)
    return open_clip.create_model(arch, pretrained=None, precision="fp32").eval()


@functools.lru_cache(maxsize=None)
def _reference(arch: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """OpenCLIP's unnormalized (image (2, D), text (2, D)) embeddings of the shared inputs."""
    images, tokens = _inputs(arch)
    model = _openclip(arch)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


@functools.lru_cache(maxsize=None)
def _inputs(arch: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random images (2, 3, 224, 224) and real tokens (2, 77) of two captions."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 224, 224, generator=generator)
    return images, open_clip.get_tokenizer(arch)(CAPTIONS)


@functools.lru_cache(maxsize=None)
def _ours(arch: str) -> DualEncoder:
    """Our model loaded from the OpenCLIP model's state dict, eval mode."""
    return from_openclip(_openclip(arch).state_dict(), arch).eval()


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    for cached in (_openclip, _reference, _inputs, _ours):
        cached.cache_clear()


def _state_dict(arch: str) -> Dict[str, torch.Tensor]:
    return _openclip(arch).state_dict()


def _tiny_openclip(arch: str, quick_gelu: bool = False) -> torch.nn.Module:
    """An OpenCLIP model with the shapes of our ``tiny-16`` / ``tiny-32`` preset (seeded)."""
    cfg = preset(arch)
    vision, text = cfg["vision"], cfg["text"]
    torch.manual_seed(2)
    return open_clip.create_model(
        "ViT-B-32", pretrained=None, force_quick_gelu=quick_gelu, embed_dim=cfg["embed_dim"],
        vision_cfg={"image_size": vision["image_size"], "patch_size": vision["patch_size"],
                    "width": vision["width"], "layers": vision["layers"],
                    "head_width": vision["width"] // vision["heads"]},
        text_cfg={k: text[k] for k in ("context_length", "vocab_size", "width", "heads", "layers")},
    ).eval()


def _assert_same_outputs(ours: torch.nn.Module, theirs: torch.nn.Module, image_size: int) -> None:
    """Unnormalized image / text embeddings agree within ATOL on random images and real tokens."""
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(3))
    tokens = _inputs("ViT-B-32")[1]
    with torch.no_grad():
        assert (ours.encode_image(images) - theirs.encode_image(images)).abs().max() < ATOL
        assert (ours.encode_text(tokens) - theirs.encode_text(tokens)).abs().max() < ATOL


def _assert_matches(model: torch.nn.Module, arch: str) -> None:
    """model.encode_image / encode_text (normalize=False) agree with OpenCLIP's within ATOL."""
    images, tokens = _inputs(arch)
    ref_image, ref_text = _reference(arch)
    with torch.no_grad():
        image, text = model.encode_image(images), model.encode_text(tokens)
    assert image.shape == ref_image.shape and text.shape == ref_text.shape
    assert (image - ref_image).abs().max().item() < ATOL
    assert (text - ref_text).abs().max().item() < ATOL


# ----------------------------------------------------------------------------------- presets


def _shapes(model: torch.nn.Module, strip_text: bool = False) -> Dict[str, torch.Size]:
    return {(k[len("text."):] if strip_text and k.startswith("text.") else k): v.shape
            for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-L-14"])
def test_preset_parameter_count_and_shapes_match_openclip(arch: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init, no forward
        ours = build_dual_encoder(arch)
        theirs = open_clip.create_model(arch, pretrained=None, device="meta")
    assert _numel(ours) == _numel(theirs)
    if arch == "ViT-B-16":
        assert _numel(ours) == 149_620_737
    assert _shapes(ours, strip_text=True) == _shapes(theirs)


def test_presets_and_overrides() -> None:
    assert preset("ViT-L-14")["vision"]["heads"] == 16 and preset("ViT-L-14")["embed_dim"] == 768
    assert preset("ViT-B-16-quickgelu")["quick_gelu"] and not preset("ViT-B-16")["quick_gelu"]
    with pytest.raises(CosmosError, match="unknown architecture 'ViT-H-99'.*ViT-B-16"):
        preset("ViT-H-99")
    model = build_dual_encoder("tiny-32", embed_dim=8, vision={"image_size": 64},
                               init_logit_bias=-10.0)
    assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 8)
    assert model.logit_bias.item() == -10.0
    with pytest.raises(CosmosError, match="patch"):
        build_dual_encoder("tiny-16", vision={"patch": 8})
    with pytest.raises(CosmosError, match="depth"):
        build_dual_encoder("tiny-16", depth=3)


def test_build_tower_is_the_dual_encoders_tower() -> None:
    torch.manual_seed(0)
    pair = build_dual_encoder("tiny-16")
    torch.manual_seed(0)
    vision = build_tower("tiny-16", "vision")  # built first in both: the same draws
    assert vision.state_dict().keys() == pair.visual.state_dict().keys()
    assert all(torch.equal(v, pair.visual.state_dict()[k]) for k, v in vision.state_dict().items())
    assert _shapes(build_tower("tiny-16", "text")) == _shapes(pair.text)
    # 64 px / 16 px patches: 16 patches + CLS at width 64; output width = embed_dim 32
    wide = build_tower("tiny-16", "vision", image_size=64)
    assert wide.positional_embedding.shape == (17, 64) and wide.output_dim == 32
    with pytest.raises(CosmosError, match="unknown tower 'audio'"):
        build_tower("tiny-16", "audio")
    with pytest.raises(CosmosError, match="unknown vision override.*patch"):
        build_tower("tiny-16", "vision", patch=8)


def test_quick_gelu_mlp() -> None:
    torch.manual_seed(0)
    mlp = Mlp(8, 16, quick_gelu=True)
    x = torch.randn(3, 8)
    hidden = mlp.c_fc(x)
    assert torch.allclose(mlp(x), mlp.c_proj(hidden * torch.sigmoid(1.702 * hidden)))
    assert set(mlp.state_dict()) == set(Mlp(8, 16).state_dict())


# ------------------------------------------------------------------------------ conversions


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_from_openclip_matches_openclip(arch: str) -> None:
    ours = _ours(arch)
    assert isinstance(ours, DualEncoder) and ours.logit_bias is None and not ours.training
    assert ours.logit_scale.item() == _openclip(arch).logit_scale.item()
    _assert_matches(ours, arch)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_to_openclip_loads_strictly_and_matches(arch: str) -> None:
    sd = to_openclip(_ours(arch))
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in sd.values())
    # A second OpenCLIP instance with every parameter set to NaN (cheaper than a new B/16, and
    # stricter: whatever the load does not overwrite poisons the outputs).
    fresh = copy.deepcopy(_openclip(arch))
    with torch.no_grad():
        for param in fresh.parameters():
            param.fill_(float("nan"))
    fresh.load_state_dict(sd, strict=True)
    original = _state_dict(arch)
    assert all(torch.equal(v, original[k]) for k, v in fresh.state_dict().items())
    _assert_matches(fresh, arch)


@pytest.mark.slow
def test_custom_text_layout_loads_the_same_weights() -> None:
    sd = _state_dict("ViT-B-32")
    custom = convert_to_custom_text_state_dict(sd)
    assert "text.token_embedding.weight" in custom and "token_embedding.weight" not in custom
    back = to_openclip(from_openclip(custom, "ViT-B-32"))
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("arch", ["tiny-16", "tiny-32"])
def test_tiny_presets_match_openclip(arch: str) -> None:
    theirs = _tiny_openclip(arch)
    _assert_same_outputs(from_openclip(theirs.state_dict(), arch).eval(), theirs, 32)


@pytest.mark.slow
def test_quick_gelu_matches_openclip() -> None:
    theirs = _tiny_openclip("tiny-16", quick_gelu=True)
    sd = theirs.state_dict()
    _assert_same_outputs(from_openclip(sd, "tiny-16-quickgelu").eval(), theirs, 32)
    _assert_same_outputs(from_openclip(sd, "tiny-16", quick_gelu=True).eval(), theirs, 32)
    plain = from_openclip(sd, "tiny-16")  # exact GELU: the activation must make a difference
    tokens = _inputs("ViT-B-32")[1]
    with torch.no_grad():
        assert (plain.encode_text(tokens) - theirs.encode_text(tokens)).abs().max() > 1e-4


def test_logit_bias_round_trip() -> None:
    model = build_dual_encoder("tiny-16", init_logit_bias=-10.0)
    sd = to_openclip(model)
    assert sd["logit_bias"].item() == -10.0
    loaded = from_openclip(sd, "tiny-16")
    assert loaded.logit_bias is not None and loaded.logit_bias.item() == -10.0
    sd["logit_scale"] = sd["logit_scale"].reshape(1)  # OpenCLIP's non-scalar logit_scale
    assert from_openclip(sd, "tiny-16").logit_scale.shape == ()


# ------------------------------------------------------------------------------------- files


def test_pt_and_safetensors_files(tmp_path) -> None:
    theirs = _tiny_openclip("tiny-32")
    sd = theirs.state_dict()
    pt = tmp_path / "epoch_1.pt"  # an OpenCLIP training checkpoint written under DDP
    torch.save({"epoch": 1, "name": "run", "state_dict": {"module." + k: v for k, v in sd.items()}},
               pt)
    st = tmp_path / "open_clip_model.safetensors"
    save_file(sd, str(st))
    for path in (str(pt), st):
        ours = from_openclip(path, "tiny-32").eval()
        _assert_same_outputs(ours, theirs, 32)
    assert read_state_dict(str(pt)).keys() == sd.keys() == read_state_dict(str(st)).keys()


def test_unreadable_files_raise_checkpoint_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        from_openclip(str(tmp_path / "missing.safetensors"), "tiny-16")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        from_openclip(str(bad), "tiny-16")
    ours = tmp_path / "model_0000001.pth"
    torch.save({"model": to_openclip(build_dual_encoder("tiny-16")), "iteration": 1}, ours)
    with pytest.raises(CheckpointError, match="'model' is a dict, not a tensor"):
        from_openclip(str(ours), "tiny-16")


# ------------------------------------------------------------------------------------ errors


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_wrong_arch_names_key_and_both_shapes(arch: str) -> None:
    sd = _state_dict(arch)
    expected = _state_dict(OTHER[arch])["visual.conv1.weight"].shape
    with pytest.raises(CheckpointError) as info:
        from_openclip(sd, OTHER[arch])
    message = str(info.value)
    assert "visual.conv1.weight" in message and OTHER[arch] in message
    assert str(tuple(sd["visual.conv1.weight"].shape)) in message
    assert str(tuple(expected)) in message
    assert "\n" not in message


@pytest.mark.slow
def test_missing_and_unexpected_keys_are_named() -> None:
    sd = dict(_state_dict("ViT-B-32"))
    key = "transformer.resblocks.3.mlp.c_fc.bias"
    del sd[key]
    with pytest.raises(CheckpointError, match=f"ViT-B-32.*missing keys: {re.escape(key)}$"):
        from_openclip(sd, "ViT-B-32")
    sd = dict(_state_dict("ViT-B-32"), **{"visual.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: visual\.extra\.weight"):
        from_openclip(sd, "ViT-B-32")


def test_to_openclip_rejects_foreign_towers() -> None:
    model = build_dual_encoder("tiny-16")
    model.text = torch.nn.Identity()
    with pytest.raises(CheckpointError, match="text tower"):
        to_openclip(model)
    with pytest.raises(CheckpointError, match="DualEncoder"):
        to_openclip(torch.nn.Linear(2, 2))
