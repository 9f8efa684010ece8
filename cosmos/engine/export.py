"""Export an encoder of a run (or of one of its checkpoints) as an OpenCLIP local-dir model.

A run directory holds ``config.yaml``; its weights are the final ``<encoder>.pth`` or, before
the run has finished, the last training checkpoint. A checkpoint file takes the config of its
run directory (``<run>/checkpoints/model_NNNNNNN.pth`` → ``<run>/config.yaml``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from cosmos.checkpoint import Checkpointer, load_checkpoint
from cosmos.config import instantiate
from cosmos.config.instantiate import locate
from cosmos.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, EvalCrop
from cosmos.engine.defaults import load_config, load_model_weights
from cosmos.models.openclip_dir import openclip_model_cfg, preprocess_cfg, write_openclip_dir
from cosmos.utils.errors import CheckpointError, ConfigError, CosmosError


def run_files(source: str, encoder: Optional[str] = None) -> Tuple[str, str]:
    """(config.yaml, weights file) of a run directory or of a checkpoint / exported encoder."""
    source = os.path.abspath(source)
    if os.path.isdir(source):
        run_dir = source
        exported = os.path.join(run_dir, f"{encoder or 'student'}.pth")
        latest = Checkpointer(os.path.join(run_dir, "checkpoints"), enabled=False).latest()
        weights = exported if os.path.isfile(exported) else latest
        if weights is None:
            raise CheckpointError(f"{run_dir} has neither {os.path.basename(exported)} nor a "
                                  "checkpoint in checkpoints/ (is it a run directory?)")
    elif os.path.isfile(source):
        weights, folder = source, os.path.dirname(source)
        run_dir = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
    else:
        raise CheckpointError(f"{source} is neither a run directory nor a checkpoint file")
    return os.path.join(run_dir, "config.yaml"), weights


def _is_training_checkpoint(state: Any) -> bool:
    return isinstance(state, dict) and isinstance(state.get("model"), dict)


def load_run_encoder(source: str, encoder: Optional[str] = None, config_file: str = "",
                     opts: Sequence[str] = ()) -> Tuple[nn.Module, Any, Dict[str, Any]]:
    """(encoder module in eval mode, the run's config, provenance) for ``source``.

    ``encoder``: ``student`` / ``teacher`` (default: the stem of an exported ``teacher.pth``,
    else ``student``). An encoder the run does not have is a CosmosError naming those it has.
    """
    config_path, weights = run_files(source, encoder)
    config_path = config_file or config_path
    if not os.path.isfile(config_path):
        raise ConfigError(f"no config for {source}: {config_path} not found (give --config-file)")
    stem = os.path.splitext(os.path.basename(weights))[0]
    state = load_checkpoint(weights)
    training = _is_training_checkpoint(state)
    name = encoder or (stem if not training and stem in ("student", "teacher") else "student")
    if not training and stem in ("student", "teacher") and stem != name:
        raise CheckpointError(f"{weights} holds the {stem} encoder, not the {name}; give "
                              f"{name}.pth or a training checkpoint")
    cfg = load_config(config_path, opts)
    with torch.random.fork_rng(devices=[]):
        meta = instantiate(cfg.model)
    available = meta.encoders() if hasattr(meta, "encoders") else {"student": meta}
    if name not in available:
        raise CosmosError(f"{source}: the run ({type(meta).__name__}) has no {name} encoder; it "
                          f"has {', '.join(sorted(available))}")
    if training:
        load_model_weights(meta, weights, state)
        module = meta.encoders()[name] if hasattr(meta, "encoders") else meta
    else:
        module = available[name]
        load_model_weights(module, weights, state)
    info = {"source": weights, "config": config_path, "encoder": name,
            "iter": int(state.get("iter", 0)) if training else None}
    return module.eval(), cfg, info


def eval_preprocess(cfg: Any, image_size: int) -> Dict[str, Any]:
    """OpenCLIP ``preprocess_cfg`` of the first ``image_crops.clip_eval`` transform among the
    config's evaluators (the transform the toolkit evaluates with); its defaults otherwise."""
    for node in (cfg.get("evaluation") or {}).values():
        transform = node.get("transform") if hasattr(node, "get") else None
        if transform is None or not hasattr(transform, "get") or "_target_" not in transform:
            continue
        try:
            target = locate(transform["_target_"])
        except CosmosError:
            continue
        if target is EvalCrop:
            mean = transform.get("mean", None) or OPENAI_CLIP_MEAN
            std = transform.get("std", None) or OPENAI_CLIP_STD
            return preprocess_cfg(int(transform.get("size", 224)), list(mean), list(std))
    return preprocess_cfg(image_size)


def export_openclip_run(source: str, out_dir: str, encoder: Optional[str] = None,
                        config_file: str = "", opts: Sequence[str] = (),
                        overwrite: bool = False) -> Dict[str, Any]:
    """Write ``encoder`` of ``source`` to ``out_dir`` as an OpenCLIP local-dir model.

    Everything is checked (encoder present, towers OpenCLIP-compatible) before anything is
    written, and the directory appears only complete. Returns the written files and the configs.
    """
    module, cfg, info = load_run_encoder(source, encoder, config_file, opts)
    model_cfg = openclip_model_cfg(module)  # a timm tower fails here, before writing
    preprocess = eval_preprocess(cfg, model_cfg["vision_cfg"]["image_size"])
    files = write_openclip_dir(module, out_dir, preprocess, overwrite=overwrite,
                               metadata={k: v for k, v in info.items() if v is not None})
    return {"files": files, "model_cfg": model_cfg, "preprocess_cfg": preprocess, **info}
