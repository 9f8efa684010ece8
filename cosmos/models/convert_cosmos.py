"""COSMOS students and teachers: building them from presets, loading official COSMOS training
checkpoints (``student`` / ``teacher`` dicts, optional ``module.`` prefixes), and exporting."""
from __future__ import annotations

import functools
import os
from typing import Any, Dict, Mapping, Tuple, Union

import torch

from cosmos.checkpoint import load_checkpoint
from cosmos.models.convert import from_openclip, to_openclip
from cosmos.models.cosmos_student import CosmosStudent
from cosmos.models.cross_attention import AttentionalCrossPooler, TokenMapping
from cosmos.models.presets import build_dual_encoder, preset
from cosmos.utils.errors import CheckpointError, ConfigError

StateDict = Dict[str, torch.Tensor]

# official key prefix → ours (official ``src/open_clip/model.py``, ``transformer.py``: the pooler
# owned by the vision tower produces the *text*-side cross-modal embeddings, and vice versa)
_EXTRA_KEYS = (
    ("visual.attn_cross_pool.", "text_cross_pooler."),
    ("text_attn_cross_pool.", "image_cross_pooler."),
    ("image_token_mapping.", "image_token_mapping."),
    ("text_token_mapping.", "text_token_mapping."),
    ("distill_logit_scale", "distill_logit_scale"),
)


def build_cosmos_student(arch: str = "ViT-B-16", heads: int = 8, cross_attention: bool = True,
                         distillation: bool = True, **overrides: Any) -> CosmosStudent:
    """Dual encoder of preset ``arch`` plus the official cross-modal modules (8-head poolers);
    the flags as :class:`CosmosStudent`'s (an ablation builds only the parts it uses)."""
    spec = preset(arch)
    dim = overrides.get("embed_dim", spec["embed_dim"])
    return CosmosStudent(
        encoder=build_dual_encoder(arch, **overrides),
        image_cross_pooler=functools.partial(AttentionalCrossPooler, dim, heads),
        text_cross_pooler=functools.partial(AttentionalCrossPooler, dim, heads),
        image_token_mapping=functools.partial(TokenMapping, spec["vision"]["width"], dim),
        text_token_mapping=functools.partial(TokenMapping, spec["text"]["width"], dim),
        cross_attention=cross_attention, distillation=distillation,
    )


def _split(sd: Mapping[str, torch.Tensor], source: str) -> Tuple[StateDict, StateDict]:
    """Official student state dict → (OpenCLIP part, our names for the COSMOS extras)."""
    base, extra = {}, {}
    for key, value in sd.items():
        key = key[len("module."):] if key.startswith("module.") else key
        for theirs, ours in _EXTRA_KEYS:
            if key.startswith(theirs):
                scalar = key == "distill_logit_scale"
                extra[ours + key[len(theirs):]] = value.reshape(()) if scalar else value
                break
        else:
            base[key] = value
    if not extra:
        raise CheckpointError(f"{source} has no COSMOS modules (e.g. distill_logit_scale, "
                              "visual.attn_cross_pool.*): is it a plain OpenCLIP checkpoint?")
    return base, extra


def official_student_state(sd: Mapping[str, torch.Tensor], source: str) -> StateDict:
    """An official student (or teacher) state dict with our CosmosStudent key names."""
    from cosmos.models.convert import _openclip_to_ours, _unwrap

    base, extra = _split(sd, source)
    ours, _ = _openclip_to_ours(_unwrap(base, source), source)
    return {**{f"encoder.{k}": v for k, v in ours.items()}, **extra}


def _load_student(sd: Mapping[str, torch.Tensor], arch: str, source: str) -> CosmosStudent:
    base, extra = _split(sd, source)
    student = build_cosmos_student(arch)
    student.encoder = from_openclip(base, arch)
    own = {k: v for k, v in student.state_dict().items() if not k.startswith("encoder.")}
    missing = sorted(set(own) - set(extra))
    unexpected = sorted(set(extra) - set(own))
    shapes = [k for k in extra if k in own and extra[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{source} does not match a COSMOS {arch}: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, wrong shape {shapes[:3]}")
    student.load_state_dict({**{f"encoder.{k}": v for k, v in student.encoder.state_dict().items()},
                             **extra}, strict=True)
    return student


def from_official_cosmos(checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
                         arch: str = "ViT-B-16") -> Tuple[CosmosStudent, CosmosStudent]:
    """(student, teacher) from an official COSMOS training checkpoint (path or loaded dict)."""
    source = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "checkpoint"
    ckpt = load_checkpoint(source) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if not isinstance(ckpt, Mapping) or "student" not in ckpt or "teacher" not in ckpt:
        keys = list(ckpt)[:6] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{source} is not an official COSMOS checkpoint: expected 'student' "
                              f"and 'teacher' entries, found {keys}")
    student = _load_student(ckpt["student"], arch, f"{source}['student']")
    teacher = _load_student(ckpt["teacher"], arch, f"{source}['teacher']")
    for param in teacher.parameters():
        param.requires_grad_(False)
    return student, teacher.eval()


def to_official_cosmos(model: CosmosStudent) -> StateDict:
    """Inverse of the loading: our student (or teacher) in the official key layout."""
    if not (model.has_cross_attention and model.has_distillation):
        raise ConfigError("the official COSMOS layout holds the cross-attention poolers, token "
                          "mappings and distill_logit_scale; this student was built without them "
                          "(model.cross_attention=False or model.distillation=False)")
    sd = dict(to_openclip(model.encoder))
    for key, value in model.state_dict().items():
        for theirs, ours in _EXTRA_KEYS:
            if key.startswith(ours):
                sd[theirs + key[len(ours):]] = value.detach().cpu()
                break
    return sd


def export_openclip(model: CosmosStudent) -> StateDict:
    """The dual encoder of a COSMOS student/teacher as an OpenCLIP state dict (inference only)."""
    return to_openclip(model.encoder)
