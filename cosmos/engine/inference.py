"""Load a trained model for evaluation and figures: the one loader behind ``tools/eval_net.py``,
``tools/visualize_attention.py`` and the run report.

What a checkpoint path may hold, and what comes back:

* a run directory → its latest checkpoint, read as below (config: the run's ``config.yaml``);
* a training checkpoint (``{"model": state, "iter": step, ...}``) or a meta-architecture state
  dict → the config's meta-architecture;
* an exported encoder (``student.pth`` / ``teacher.pth``: only ``visual.*``, ``text.*`` and
  logit keys) → that dual encoder alone, named after the file (``teacher.pth``: ``teacher``,
  otherwise ``student``);
* an official COSMOS checkpoint (``{"student", "teacher"}``, or ``official:PATH``) → both
  COSMOS students, cross-attention poolers included, of preset ``arch`` (default ViT-B-16);
* ``openclip:PATH`` → an OpenCLIP model as the encoder ``openclip``.

Every model comes back in eval mode with ``encoders()`` (a meta-architecture or a
:class:`~cosmos.engine.pretrained.Baseline`). Bad input is one :class:`CosmosError` line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Union

import torch
from torch import nn

from cosmos.checkpoint import Checkpointer, load_checkpoint
from cosmos.config import instantiate
from cosmos.engine.defaults import load_config, load_model_weights, select_device
from cosmos.engine.pretrained import MODEL_SCHEMES, Baseline, build_baseline, split_scheme
from cosmos.utils.errors import CheckpointError, ConfigError, CosmosError

__all__ = ["InferenceModel", "load_model_for_inference", "find_config", "latest_checkpoint"]

_ENCODER_KEYS = ("visual.", "text.", "logit_scale", "logit_bias")


@dataclass
class InferenceModel:
    """A loaded model. ``model``: eval mode, with ``encoders()``; ``cfg``: the config it was
    built from (None when none was needed); ``checkpoint``: the file (or folder) read; ``step``:
    the training step saved with it (0 when not recorded); ``which``: the encoder to use."""
    model: nn.Module
    cfg: Any
    checkpoint: str
    step: int
    which: str


def find_config(checkpoint: str) -> Optional[str]:
    """The run's ``config.yaml``: two levels up from ``checkpoints/model_*.pth``, or next to the
    checkpoint (``student.pth``); None if there is none."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    candidates = [os.path.join(folder, "config.yaml")]
    if os.path.basename(folder) == "checkpoints":
        candidates.insert(0, os.path.join(os.path.dirname(folder), "config.yaml"))
    return next((c for c in candidates if os.path.isfile(c)), None)


def latest_checkpoint(run_dir: str) -> str:
    """The newest checkpoint of a run directory (``checkpoints/last_checkpoint``)."""
    path = Checkpointer(os.path.join(run_dir, "checkpoints"), enabled=False).latest()
    if path is None:
        raise CheckpointError(f"{run_dir} has no checkpoint (nothing in "
                              f"{os.path.join(run_dir, 'checkpoints')}); train first or give a "
                              "checkpoint file")
    return path


def _is_encoder_state(state: Dict[str, Any]) -> bool:
    return bool(state) and all(k.startswith(_ENCODER_KEYS) for k in state)


def _is_official(state: Dict[str, Any]) -> bool:
    return "student" in state and "teacher" in state and "model" not in state


def _official(source: Union[str, Dict[str, Any]], path: str, arch: Optional[str]) -> Baseline:
    """Both students of an official COSMOS checkpoint (``source``: its path or its content)."""
    from cosmos.models.convert_cosmos import from_official_cosmos

    arch = arch or "ViT-B-16"
    try:
        student, teacher = from_official_cosmos(source, arch=arch)
    except CosmosError as exc:
        raise CheckpointError(f"{exc} (read {path} as an official COSMOS checkpoint of preset "
                              f"{arch!r}; --arch picks another)") from None
    return Baseline({"student": student, "teacher": teacher})


def _from_config(path: str, state: Dict[str, Any], cfg: Any) -> nn.Module:
    """The config's meta-architecture with ``state`` loaded (an exported encoder: that encoder
    alone, in a :class:`Baseline`)."""
    model = instantiate(cfg.model)
    if "model" in state or not _is_encoder_state(state):
        load_model_weights(model, path, state)
        return model
    encoders = model.encoders()
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem in encoders else "student"
    if name not in encoders:
        raise ConfigError(f"{path} is an exported encoder, but the config's model has no "
                          f"encoder named student or {stem} (it has {sorted(encoders)})")
    load_model_weights(encoders[name], path, state)
    return Baseline({name: encoders[name]})


def _pick(model: nn.Module, which: Optional[str]) -> str:
    names = list(model.encoders())
    if which is None:
        return "student" if "student" in names else names[0]
    if which not in names:
        raise CosmosError(f"unknown encoder {which!r}; this model has {sorted(names)}")
    return which


def load_model_for_inference(checkpoint: str, config: Union[str, Any, None] = None,
                             overrides: Sequence[str] = (), *, which: Optional[str] = None,
                             arch: Optional[str] = None,
                             device: Union[str, torch.device] = "cpu") -> InferenceModel:
    """Load ``checkpoint`` (a file, a run directory or ``scheme:PATH``; see the module
    docstring) for inference.

    Args:
        config: a config file, an already loaded config (its ``model`` node builds the model),
            or None for the run's ``config.yaml`` (:func:`find_config`); official and OpenCLIP
            weights need none (a config, if found, is returned for transforms and tokenizers).
        overrides: ``key=value`` applied to a config file.
        which: the encoder the caller will use (checked); default ``student``, else the first.
        arch: preset of an official COSMOS or OpenCLIP state-dict checkpoint.
        device: ``cpu``, ``cuda[:N]``, ``auto`` or a torch.device.
    """
    if os.path.isdir(checkpoint):
        checkpoint = latest_checkpoint(checkpoint)
    scheme, path = split_scheme(checkpoint, MODEL_SCHEMES, "the checkpoint",
                                plain="a checkpoint PATH")
    if isinstance(config, str) or config is None:
        config_file = config or (find_config(path) if scheme is None else None)
        cfg = load_config(config_file, overrides) if config_file else None
    else:
        cfg = config
    step = 0
    if scheme is not None:
        model = (_official(path, path, arch) if scheme == "official"
                 else build_baseline(checkpoint, arch))
    else:
        state = load_checkpoint(path)
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
        if _is_official(state):
            model = _official(state, path, arch)
        elif cfg is None:
            raise ConfigError(f"no config.yaml found for {path} (looked in the run directory "
                              "and next to the file); pass --config-file")
        else:
            model = _from_config(path, state, cfg)
            step = int(state.get("iter", 0) or 0)
    model = model.to(device if isinstance(device, torch.device) else select_device(device))
    return InferenceModel(model.eval(), cfg, path, step, _pick(model, which))
