"""Weights a training run starts from (``train.init_checkpoint``) and the model schemes of
``tools/eval_net.py --model``.

``train.init_checkpoint`` takes

- ``PATH``: a toolkit checkpoint or exported model state dict of the same config;
- ``openclip:PATH``: an OpenCLIP state-dict file (torch or ``.safetensors``) or local-dir model,
  loaded strictly into the student's dual encoder; cross-attention heads and other modules keep
  their fresh initialisation, and an EMA teacher starts as a copy of the loaded student;
- ``official:PATH``: an official COSMOS training checkpoint (its ``student`` and ``teacher``,
  cross-attention modules included) into a COSMOS config with the same shapes.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from cosmos.checkpoint import load_checkpoint
from cosmos.models.attention_source import AttentionSource
from cosmos.utils.errors import CheckpointError, ConfigError

logger = logging.getLogger("cosmos")
INIT_SCHEMES = ("openclip", "official")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*):(?!//)(.*)$")


def split_scheme(spec: str, known: Sequence[str], what: str,
                 plain: Optional[str] = None) -> Tuple[Optional[str], str]:
    """``"scheme:PATH"`` → (scheme, PATH); a plain path → (None, path) when ``plain`` describes
    what it means, else an error. An unknown scheme is one ConfigError listing the known ones."""
    match = _SCHEME.match(spec)
    if match and not os.path.exists(spec):
        scheme, path = match.group(1), match.group(2)
        if scheme not in known:
            options = ", ".join(f"{k}:PATH" for k in known) + (f", or {plain}" if plain else "")
            raise ConfigError(f"unknown scheme {scheme!r} in {what}={spec}; known: {options}")
        if not path:
            raise ConfigError(f"{what}={spec} names no path after '{scheme}:'")
        return scheme, path
    if plain is None:
        raise ConfigError(f"{what}={spec} has no scheme; use one of "
                          + ", ".join(f"{k}:PATH" for k in known))
    return None, spec


def _encoders(meta_arch: nn.Module) -> Dict[str, nn.Module]:
    return meta_arch.encoders() if hasattr(meta_arch, "encoders") else {"student": meta_arch}


@torch.no_grad()
def teacher_follows_student(meta_arch: nn.Module) -> None:
    """Copy the student's parameters into the EMA teacher (no-op without a teacher)."""
    if not hasattr(meta_arch, "ema_parameters"):
        return
    teacher, student = meta_arch.ema_parameters()
    for t, s in zip(teacher, student):
        t.copy_(s)


def load_init_checkpoint(meta_arch: nn.Module, spec: str) -> None:
    """Initialise ``meta_arch`` from ``train.init_checkpoint`` (see the module docstring)."""
    from cosmos.engine.defaults import load_model_weights

    scheme, path = split_scheme(spec, INIT_SCHEMES, "train.init_checkpoint",
                                plain="a toolkit checkpoint PATH")
    if scheme is None:
        load_model_weights(meta_arch, path)
    elif scheme == "openclip":
        from cosmos.models.openclip_dir import load_openclip_weights

        student = _encoders(meta_arch).get("student")
        if student is None:
            raise CheckpointError(f"train.init_checkpoint={spec}: the model has no student "
                                  "dual encoder to load OpenCLIP weights into")
        device = next(student.parameters()).device
        load_openclip_weights(student, path, name="the config's student encoder")
        student.to(device)
        teacher_follows_student(meta_arch)
    else:
        load_official_cosmos(meta_arch, path)


def load_official_cosmos(meta_arch: nn.Module, path: str) -> None:
    """Load an official COSMOS checkpoint's student and teacher into a COSMOS meta-arch."""
    from cosmos.models.convert_cosmos import official_student_state

    for name in ("student", "teacher"):
        if not isinstance(getattr(meta_arch, name, None), nn.Module):
            raise CheckpointError(f"official:{path} needs a COSMOS config (student and teacher "
                                  f"with cross-attention modules); this model has no {name}")
    if not getattr(meta_arch, "uses_cross_attention", True):
        raise CheckpointError(f"official:{path} holds cross-attention modules, but this config "
                              "builds none (model.cross_attention=False)")
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "student" not in ckpt or "teacher" not in ckpt:
        raise CheckpointError(f"{path} is not an official COSMOS checkpoint: expected 'student' "
                              "and 'teacher' entries")
    for name in ("student", "teacher"):
        module = getattr(meta_arch, name)
        state = official_student_state(ckpt[name], f"{path}['{name}']")
        _load_strict(module, state, f"{path}['{name}']")


def _load_strict(module: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    expected = module.state_dict()
    for key, value in state.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source} does not fit the config: {key} is "
                                  f"{tuple(value.shape)} in the file but "
                                  f"{tuple(expected[key].shape)} in the model")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit the config: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    module.load_state_dict(state, strict=True)


MODEL_SCHEMES = ("openclip", "official")


class Baseline(nn.Module):
    """Encoders without their training meta-architecture (a model trained elsewhere, an
    exported encoder), evaluated and visualised like a meta-architecture's.

    units: {name: dual encoder, or a COSMOS student whose cross poolers come along}.
    """

    def __init__(self, units: Dict[str, nn.Module]) -> None:
        super().__init__()
        self.named = nn.ModuleDict(units)

    def encoders(self) -> Dict[str, nn.Module]:
        return {name: unit.attention_source().encoder for name, unit in self.named.items()}

    def attention_sources(self) -> Dict[str, AttentionSource]:
        return {name: unit.attention_source() for name, unit in self.named.items()}


def build_baseline(spec: str, arch: Optional[str] = None) -> Baseline:
    """``openclip:PATH`` (state-dict file with ``arch``, or a local-dir with its config) → the
    encoder ``openclip``; ``official:PATH`` (official COSMOS checkpoint, preset ``arch``, default
    ViT-B-16) → ``student`` and ``teacher`` (with their cross-attention poolers)."""
    scheme, path = split_scheme(spec, MODEL_SCHEMES, "--model")
    if scheme == "openclip":
        from cosmos.models.openclip_dir import openclip_from_path
        return Baseline({"openclip": openclip_from_path(path, arch)}).eval()
    from cosmos.models.convert_cosmos import from_official_cosmos
    student, teacher = from_official_cosmos(path, arch or "ViT-B-16")
    return Baseline({"student": student, "teacher": teacher}).eval()
