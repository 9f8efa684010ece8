"""Architecture presets keyed by OpenCLIP model name, and a builder for them.

A preset is a plain dict::

    {"embed_dim": D, "quick_gelu": bool,
     "vision": {image_size, patch_size, width, layers, heads, mlp_ratio},
     "text": {context_length, vocab_size, width, layers, heads, mlp_ratio}}

The three CLIP presets copy OpenCLIP's ``model_configs/*.json`` (vision heads = width / 64,
mlp_ratio 4, exact GELU). ``tiny-16`` / ``tiny-32`` are small shapes for tests.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Mapping, Optional, Union

from cosmos.models.dual_encoder import DualEncoder
from cosmos.models.text import TextTransformer
from cosmos.models.vit import VisionTransformer
from cosmos.utils.errors import CosmosError


def _vision(image_size: int, patch_size: int, width: int, layers: int,
            heads: int) -> Dict[str, Any]:
    return {"image_size": image_size, "patch_size": patch_size, "width": width, "layers": layers,
            "heads": heads, "mlp_ratio": 4.0}


def _text(width: int, layers: int, heads: int, context_length: int = 77,
          vocab_size: int = 49408) -> Dict[str, Any]:
    return {"context_length": context_length, "vocab_size": vocab_size, "width": width,
            "layers": layers, "heads": heads, "mlp_ratio": 4.0}


PRESETS: Dict[str, Dict[str, Any]] = {
    "ViT-B-16": {"embed_dim": 512, "quick_gelu": False,
                 "vision": _vision(224, 16, 768, 12, 12), "text": _text(512, 12, 8)},
    "ViT-B-32": {"embed_dim": 512, "quick_gelu": False,
                 "vision": _vision(224, 32, 768, 12, 12), "text": _text(512, 12, 8)},
    "ViT-L-14": {"embed_dim": 768, "quick_gelu": False,
                 "vision": _vision(224, 14, 1024, 24, 16), "text": _text(768, 12, 12)},
    "tiny-16": {"embed_dim": 32, "quick_gelu": False,
                "vision": _vision(32, 16, 64, 2, 4), "text": _text(64, 2, 4)},
    "tiny-32": {"embed_dim": 32, "quick_gelu": False,
                "vision": _vision(32, 32, 64, 2, 4), "text": _text(64, 2, 4)},
}

# Top-level overrides accepted by build_dual_encoder besides the preset's own keys.
_MODEL_KEYS = ("init_logit_scale", "init_logit_bias", "grad_checkpointing")
_QUICK = "-quickgelu"


def preset(name: str) -> Dict[str, Any]:
    """A deep copy of preset ``name`` (keys ``embed_dim``, ``quick_gelu``, ``vision``, ``text``).

    As in OpenCLIP, a ``-quickgelu`` suffix (e.g. ``"ViT-B-16-quickgelu"``) sets ``quick_gelu``.
    """
    base = name[: -len(_QUICK)] if name.endswith(_QUICK) else name
    if base not in PRESETS:
        raise CosmosError(f"unknown architecture {name!r}; known: {', '.join(PRESETS)} "
                          f"(each also with a {_QUICK!r} suffix)")
    cfg = copy.deepcopy(PRESETS[base])
    cfg["quick_gelu"] = cfg["quick_gelu"] or base != name
    return cfg


def _merge(cfg: Dict[str, Any], overrides: Dict[str, Any], arch: str) -> Dict[str, Any]:
    """Apply overrides: ``vision`` / ``text`` dicts update the tower dicts, others replace keys."""
    for key, value in overrides.items():
        if key in ("vision", "text"):
            if not isinstance(value, Mapping):
                raise CosmosError(f"override {key!r} for {arch} must be a dict of tower fields")
            unknown = sorted(set(value) - set(cfg[key]))
            if unknown:
                raise CosmosError(f"unknown {key} override(s) {unknown} for {arch}; "
                                  f"known: {', '.join(cfg[key])}")
            cfg[key].update(value)
        elif key in cfg or key in _MODEL_KEYS:
            cfg[key] = value
        else:
            raise CosmosError(f"unknown override {key!r} for {arch}; known: "
                              f"{', '.join(list(cfg) + list(_MODEL_KEYS))}")
    return cfg


_TOWERS = {"vision": VisionTransformer, "text": TextTransformer}


def _tower(cfg: Dict[str, Any], tower: str) -> Union[VisionTransformer, TextTransformer]:
    """The ``tower`` ("vision" | "text") of a merged preset dict, randomly initialised."""
    return _TOWERS[tower](**cfg[tower], output_dim=cfg["embed_dim"], quick_gelu=cfg["quick_gelu"],
                          grad_checkpointing=cfg.get("grad_checkpointing", False))


def build_tower(arch: str, tower: str, **fields: Any
                ) -> Union[VisionTransformer, TextTransformer]:
    """The image (``tower="vision"``) or text (``"text"``) tower of preset ``arch`` alone,
    randomly initialised, its output of width ``embed_dim``; ``fields`` change tower fields,
    e.g. ``build_tower("ViT-B-16", "vision", image_size=96)``."""
    if tower not in _TOWERS:
        raise CosmosError(f"unknown tower {tower!r}; known: {', '.join(_TOWERS)}")
    return _tower(_merge(preset(arch), {tower: fields}, arch), tower)


def build_dual_encoder(arch: str, **overrides: Any) -> DualEncoder:
    """Build a randomly initialised DualEncoder from preset ``arch``.

    Overrides: ``embed_dim``, ``quick_gelu``, ``init_logit_scale`` (default ln(1/0.07)),
    ``init_logit_bias`` (default None: no ``logit_bias``), ``grad_checkpointing``, and
    ``vision={...}`` / ``text={...}`` to change tower fields, e.g. ``vision={"image_size": 96}``.
    """
    cfg = _merge(preset(arch), overrides, arch)
    visual = _tower(cfg, "vision")
    text = _tower(cfg, "text")
    init_scale: float = cfg.get("init_logit_scale", math.log(1 / 0.07))
    init_bias: Optional[float] = cfg.get("init_logit_bias")
    return DualEncoder(visual, text, init_logit_scale=init_scale, init_logit_bias=init_bias)
