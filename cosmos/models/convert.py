"""Convert between OpenCLIP state dicts and :class:`DualEncoder`.

OpenCLIP's built-in ``CLIP`` keeps the text tower at the top level (``token_embedding.weight``,
``positional_embedding``, ``transformer.resblocks.*``, ``ln_final.*``, ``text_projection``);
``CustomTextCLIP`` nests it under ``text.`` like we do. ``visual.*``, ``logit_scale`` and the
optional ``logit_bias`` have the same names on both sides. The causal ``attn_mask`` buffer is
non-persistent in OpenCLIP and is ignored when found in older files.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch

from cosmos.checkpoint.checkpointer import load_checkpoint
from cosmos.models.dual_encoder import DualEncoder
from cosmos.models.presets import build_dual_encoder
from cosmos.models.text import TextTransformer
from cosmos.models.vit import VisionTransformer
from cosmos.utils.errors import CheckpointError

StateDict = Dict[str, torch.Tensor]
_TEXT_PREFIXES = ("token_embedding.", "transformer.", "ln_final.")
_TEXT_PARAMS = ("positional_embedding", "text_projection")
_SCALARS = ("logit_scale", "logit_bias")
_SHOWN = 3  # offending keys named per category in an error message


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _unwrap(obj: Any, source: str) -> StateDict:
    """Unwrap ``obj["state_dict"]``, strip a leading ``module.``, check that values are tensors."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    out: StateDict = {}
    for key, value in obj.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, "
                                  "not a tensor (expected a model state dict)")
        if name in out:
            raise CheckpointError(f"{source}: key {name!r} appears both with and without 'module.'")
        out[name] = value
    return out


def read_state_dict(path: str) -> StateDict:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    A ``state_dict`` entry (OpenCLIP training checkpoints) is unwrapped and a leading ``module.``
    (DDP) is stripped from every key.
    """
    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        return _unwrap(load_checkpoint(path), path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    from safetensors.torch import load_file

    try:
        return _unwrap(load_file(path, device="cpu"), path)
    except CheckpointError:
        raise
    except Exception as exc:  # header / truncation errors from safetensors
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(exc)}") from exc


def _is_builtin_text_key(key: str) -> bool:
    return key in _TEXT_PARAMS or key.startswith(_TEXT_PREFIXES)


def _openclip_to_ours(sd: StateDict, source: str) -> Tuple[StateDict, bool]:
    """Rename OpenCLIP keys to ours. Returns (state dict, whether the built-in layout was used)."""
    out: StateDict = {}
    builtin = False
    for key, value in sd.items():
        if key == "attn_mask" or key.endswith(".attn_mask"):
            continue
        if _is_builtin_text_key(key):
            builtin, name = True, "text." + key
        else:
            name = key
        if name in out:
            raise CheckpointError(f"{source}: {name!r} is given twice (built-in CLIP and "
                                  "CustomTextCLIP text layouts are mixed)")
        if name in _SCALARS and value.numel() == 1:
            value = value.reshape(())  # OpenCLIP's non-scalar (FSDP) logit_scale is shape [1]
        out[name] = value
    return out, builtin


def _listed(keys: List[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def _check_keys(model: DualEncoder, sd: StateDict, arch: str, source: str, builtin: bool) -> None:
    """Raise CheckpointError naming mis-shaped (first), missing and unexpected keys (OpenCLIP
    names); ``arch`` names the model in the message."""
    def theirs(name: str) -> str:
        return name[len("text."):] if builtin and name.startswith("text.") else name

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(theirs(k) for k in expected if k not in sd)
    unexpected = sorted(theirs(k) for k in sd if k not in expected)
    shapes = [f"{theirs(k)} is {tuple(v.shape)} in the checkpoint but {expected[k]} in {arch}"
              for k, v in sd.items() if k in expected and tuple(v.shape) != expected[k]]
    problems = []
    if shapes:
        problems.append("shape mismatch: " + _listed(shapes))
    if missing:
        problems.append("missing keys: " + _listed(missing))
    if unexpected:
        problems.append("unexpected keys: " + _listed(unexpected))
    if problems:
        raise CheckpointError(f"{source} does not match {arch}: " + "; ".join(problems))


def _empty_dual_encoder(arch: str, **overrides: Any) -> DualEncoder:
    """A DualEncoder with uninitialised CPU parameters, to be fully overwritten by a strict load."""
    with torch.device("meta"):
        model = build_dual_encoder(arch, **overrides)
    if any(True for _ in model.buffers()):  # buffers would need their real initial values
        return build_dual_encoder(arch, **overrides)
    return model.to_empty(device="cpu")


def from_openclip(state_dict_or_path: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                  arch: str = "ViT-B-16", **overrides: Any) -> DualEncoder:
    """Build preset ``arch`` (fp32, CPU) and load an OpenCLIP state dict or file into it strictly.

    Accepts the built-in CLIP and the CustomTextCLIP layouts, ``.safetensors`` or torch files
    (see :func:`read_state_dict`). ``logit_bias`` in the weights gives a model with a bias.
    ``overrides`` go to :func:`build_dual_encoder` (e.g. ``quick_gelu=True`` for OpenAI weights;
    the arch ``"ViT-B-16-quickgelu"`` does the same). Missing, unexpected or mis-shaped keys
    raise CheckpointError; nothing is resized or inferred.
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = os.fspath(state_dict_or_path)
        sd = read_state_dict(source)
    else:
        source = "state dict"
        sd = _unwrap(state_dict_or_path, source)
    if any(k == "logit_bias" or k == "module.logit_bias" for k in sd):
        overrides.setdefault("init_logit_bias", 0.0)
    model = _empty_dual_encoder(arch, **overrides)
    load_openclip_state(model, sd, source, f"arch {arch!r}")
    return model


def load_openclip_state(model: DualEncoder, state_dict: Mapping[str, torch.Tensor], source: str,
                        name: str = "the model") -> None:
    """Load an OpenCLIP state dict (either layout) into an existing ``model`` strictly.

    Missing, unexpected or mis-shaped keys raise one CheckpointError naming ``source``, ``name``
    and the first offending keys (shape mismatches first); nothing is loaded then.
    """
    ours, builtin = _openclip_to_ours(_unwrap(state_dict, source), source)
    _check_keys(model, ours, name, source, builtin)
    model.load_state_dict(ours, strict=True)


def to_openclip(model: DualEncoder) -> StateDict:
    """State dict in OpenCLIP's built-in ``CLIP`` layout (CPU tensors), loads with strict=True."""
    if not isinstance(model, DualEncoder):
        raise CheckpointError(f"to_openclip expects a DualEncoder, got {type(model).__name__}")
    towers = ((model.visual, VisionTransformer, "visual"), (model.text, TextTransformer, "text"))
    for tower, kind, name in towers:
        if not isinstance(tower, kind):
            raise CheckpointError(f"to_openclip: the {name} tower is a {type(tower).__name__}, "
                                  f"OpenCLIP's layout needs a {kind.__name__}")
    return {(k[len("text."):] if k.startswith("text.") else k): v.detach().cpu()
            for k, v in model.state_dict().items()}
