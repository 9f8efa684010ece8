"""OpenCLIP model directories: write and read what ``open_clip.create_model_and_transforms(
"local-dir:DIR")`` loads.

A directory holds ``open_clip_config.json`` (``model_cfg``: OpenCLIP's ``CLIP`` arguments,
``preprocess_cfg``: its evaluation transform) and the weights in OpenCLIP's built-in ``CLIP``
layout twice: ``open_clip_model.safetensors`` (what ``local-dir:`` picks first) and
``open_clip_pytorch_model.bin`` (a plain ``torch.save`` state dict, for ``pretrained=PATH`` with
a built-in model name and for older OpenCLIP releases). The model config is read from the towers
themselves, so any :class:`DualEncoder` of :class:`VisionTransformer` and
:class:`TextTransformer` exports, whatever its shapes.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch

from cosmos.models.convert import StateDict, load_openclip_state, read_state_dict, to_openclip
from cosmos.models.dual_encoder import DualEncoder
from cosmos.models.text import TextTransformer
from cosmos.models.vit import VisionTransformer
from cosmos.utils.errors import CheckpointError

CONFIG_NAME = "open_clip_config.json"
SAFETENSORS_NAME = "open_clip_model.safetensors"
TORCH_NAME = "open_clip_pytorch_model.bin"
# the weight files OpenCLIP's local-dir loader prefers, in its order
WEIGHT_NAMES = (SAFETENSORS_NAME, "open_clip_pytorch_model.safetensors", TORCH_NAME,
                "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin",
                "pytorch_model.pth", "model.pth")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_VISION_KEYS = {"image_size", "patch_size", "width", "layers", "head_width", "mlp_ratio"}
_TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
_TOP_KEYS = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "init_logit_bias",
             "init_logit_scale", "custom_text"}


def _tower_shape(tower: Any) -> Tuple[int, float, bool]:
    """(heads, mlp_ratio, quick_gelu) of a VisionTransformer / TextTransformer."""
    block = tower.transformer.resblocks[0]
    mlp = block.mlp
    return (block.attn.heads, mlp.c_fc.out_features / tower.width,
            type(mlp.gelu).__name__ == "QuickGELU")


def openclip_model_cfg(model: DualEncoder) -> Dict[str, Any]:
    """OpenCLIP ``model_cfg`` (the ``CLIP(...)`` arguments) describing ``model``'s towers."""
    towers = ((getattr(model, "visual", None), VisionTransformer, "image"),
              (getattr(model, "text", None), TextTransformer, "text"))
    for tower, kind, name in towers:
        if not isinstance(tower, kind):
            raise CheckpointError(f"the {name} tower is a {type(tower).__name__}; OpenCLIP's CLIP "
                                  f"layout needs the toolkit's {kind.__name__} (backbones."
                                  f"{'vit' if kind is VisionTransformer else 'text_transformer'})")
    visual, text = model.visual, model.text
    v_heads, v_mlp, v_quick = _tower_shape(visual)
    t_heads, t_mlp, t_quick = _tower_shape(text)
    if v_quick != t_quick or visual.output_dim != text.output_dim:
        raise CheckpointError("OpenCLIP needs one activation and one embedding size for both "
                              f"towers (image: quick_gelu={v_quick}, dim {visual.output_dim}; "
                              f"text: quick_gelu={t_quick}, dim {text.output_dim})")
    cfg: Dict[str, Any] = {
        "embed_dim": visual.output_dim,
        "quick_gelu": v_quick,
        "vision_cfg": {"image_size": visual.image_size, "layers": len(visual.transformer.resblocks),
                       "width": visual.width, "head_width": visual.width // v_heads,
                       "mlp_ratio": v_mlp, "patch_size": visual.patch_size},
        "text_cfg": {"context_length": text.context_length, "vocab_size": text.vocab_size,
                     "width": text.width, "heads": t_heads,
                     "layers": len(text.transformer.resblocks), "mlp_ratio": t_mlp},
    }
    if getattr(model, "logit_bias", None) is not None:
        cfg["init_logit_bias"] = float(model.logit_bias.detach())
    return cfg


def dual_encoder_from_cfg(model_cfg: Mapping[str, Any], source: str = "model_cfg") -> DualEncoder:
    """A randomly initialised DualEncoder shaped like an OpenCLIP ``model_cfg``.

    Options the toolkit's towers do not implement (timm / Hugging Face towers, attentional
    pooling, layer scale, ...) raise CheckpointError naming the first one.
    """
    def unsupported(cfg: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
        for key, value in cfg.items():
            if key not in allowed and value not in (None, False, 0, 0.0, "", {}, [], "argmax",
                                                    "tok", "learnable", "linear", "default"):
                raise CheckpointError(f"{source}: OpenCLIP option {where}{key}={value!r} is not "
                                      "supported by the toolkit's ViT / text towers")

    unsupported(model_cfg, _TOP_KEYS, "")
    vision, text = dict(model_cfg.get("vision_cfg") or {}), dict(model_cfg.get("text_cfg") or {})
    unsupported(vision, _VISION_KEYS, "vision_cfg.")
    unsupported(text, _TEXT_KEYS, "text_cfg.")
    quick = bool(model_cfg.get("quick_gelu", False))
    dim = int(model_cfg["embed_dim"])
    v_width = int(vision.get("width", 768))
    common = {"output_dim": dim, "quick_gelu": quick}
    visual = VisionTransformer(
        image_size=int(vision.get("image_size", 224)), patch_size=int(vision.get("patch_size", 16)),
        width=v_width, layers=int(vision.get("layers", 12)),
        heads=v_width // int(vision.get("head_width", 64)),
        mlp_ratio=float(vision.get("mlp_ratio", 4.0)), **common)
    tower = TextTransformer(
        context_length=int(text.get("context_length", 77)),
        vocab_size=int(text.get("vocab_size", 49408)), width=int(text.get("width", 512)),
        layers=int(text.get("layers", 12)), heads=int(text.get("heads", 8)),
        mlp_ratio=float(text.get("mlp_ratio", 4.0)), **common)
    bias = model_cfg.get("init_logit_bias")
    return DualEncoder(visual, tower, init_logit_bias=None if bias is None else float(bias))


def preprocess_cfg(size: int, mean=OPENAI_MEAN, std=OPENAI_STD, interpolation: str = "bicubic",
                   resize_mode: str = "shortest") -> Dict[str, Any]:
    """OpenCLIP ``preprocess_cfg``; the defaults are the toolkit's ``image_crops.clip_eval``
    (resize the shortest side, bicubic, centre crop, OpenAI mean / std)."""
    return {"size": int(size), "mode": "RGB", "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "interpolation": interpolation,
            "resize_mode": resize_mode, "fill_color": 0}


def _replace_dir(tmp: str, out_dir: str, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``out_dir`` (an empty or, with ``overwrite``, any old one
    is replaced only now)."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise CheckpointError(f"{out_dir} exists and is not empty; choose another --out or "
                                  "pass --overwrite")
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old.",
                               dir=os.path.dirname(out_dir))
        os.replace(out_dir, os.path.join(old, "dir"))
        try:
            os.replace(tmp, out_dir)
        except OSError:
            os.replace(os.path.join(old, "dir"), out_dir)  # put the old one back
            raise
        shutil.rmtree(old)
        return
    if os.path.isdir(out_dir):
        os.rmdir(out_dir)
    elif os.path.exists(out_dir):
        raise CheckpointError(f"{out_dir} exists and is not a directory")
    os.replace(tmp, out_dir)


def write_openclip_dir(model: DualEncoder, out_dir: str, preprocess: Mapping[str, Any],
                       metadata: Optional[Mapping[str, Any]] = None,
                       overwrite: bool = False) -> Dict[str, str]:
    """Write ``model`` as an OpenCLIP local-dir model into ``out_dir``; returns the file paths.

    Files are written into a temporary sibling directory that is renamed at the end, so a
    failure leaves ``out_dir`` as it was. ``metadata`` is stored under ``"cosmos"`` in the json.
    """
    from safetensors.torch import save_file

    model_cfg = openclip_model_cfg(model)
    state = {k: v.contiguous() for k, v in to_openclip(model).items()}
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    try:
        config = {"model_cfg": model_cfg, "preprocess_cfg": dict(preprocess)}
        if metadata:
            config["cosmos"] = dict(metadata)
        with open(os.path.join(tmp, CONFIG_NAME), "w") as f:
            json.dump(config, f, indent=2)
        save_file(state, os.path.join(tmp, SAFETENSORS_NAME), metadata={"format": "pt"})
        torch.save(state, os.path.join(tmp, TORCH_NAME))
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_dir(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"config": os.path.join(out_dir, CONFIG_NAME),
            "safetensors": os.path.join(out_dir, SAFETENSORS_NAME),
            "state_dict": os.path.join(out_dir, TORCH_NAME)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_openclip(path: str) -> Tuple[StateDict, Optional[Dict[str, Any]], str]:
    """(state dict, ``open_clip_config.json`` contents or None, weights file) of an OpenCLIP
    local-dir model or a single state-dict file (torch or ``.safetensors``)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return read_state_dict(path), None, path
    config_path = os.path.join(path, CONFIG_NAME)
    config = None
    if os.path.isfile(config_path):
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {config_path}: {exc}") from None
        if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
            raise CheckpointError(f"{config_path} has no 'model_cfg' (not an OpenCLIP config)")
    weights = next((os.path.join(path, n) for n in WEIGHT_NAMES
                    if os.path.isfile(os.path.join(path, n))), None)
    if weights is None:
        raise CheckpointError(f"{path} holds no OpenCLIP weights (looked for "
                              f"{', '.join(WEIGHT_NAMES[:3])}, ...)")
    return read_state_dict(weights), config, weights


def load_openclip_weights(model: DualEncoder, path: str, name: str = "the model") -> str:
    """Load an OpenCLIP local-dir or state-dict file into ``model`` strictly; returns the
    weights file. A local-dir whose ``quick_gelu`` differs from the model's is refused (the
    weights would load but compute something else)."""
    state, config, weights = read_openclip(path)
    if config is not None and isinstance(model.visual, VisionTransformer):
        theirs = bool(config["model_cfg"].get("quick_gelu", False))
        ours = _tower_shape(model.visual)[2]
        if theirs != ours:
            raise CheckpointError(f"{path}: its config has quick_gelu={theirs} but {name} uses "
                                  f"{'QuickGELU' if ours else 'GELU'}; set quick_gelu={theirs} "
                                  "on the towers")
    load_openclip_state(model, state, weights, name)
    return weights


def openclip_from_path(path: str, arch: Optional[str] = None) -> DualEncoder:
    """A DualEncoder built from a local-dir's config (or preset ``arch``) with its weights."""
    from cosmos.models.presets import build_dual_encoder

    state, config, weights = read_openclip(path)
    if arch:
        name = f"arch {arch!r}"
        model = build_dual_encoder(arch, **({"init_logit_bias": 0.0} if "logit_bias" in state
                                            else {}))
    elif config is not None:
        name = f"the model_cfg of {os.path.join(path, CONFIG_NAME)}"
        model = dual_encoder_from_cfg(config["model_cfg"], os.path.join(path, CONFIG_NAME))
    else:
        raise CheckpointError(f"{path} is a state-dict file without {CONFIG_NAME}; give its "
                              "architecture with --arch (e.g. --arch ViT-B-16)")
    load_openclip_state(model, state, weights, name)
    return model.eval()
