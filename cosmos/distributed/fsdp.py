"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the meta-architectures, and consolidated
train state that loads at any world size.

Usage (``torch.distributed`` initialised, model already on its device)::

    model = wrap_fsdp(model.to(device), mixed_precision="bf16")
    optimizer = build_optimizer(model)            # AFTER wrapping: parameters are now DTensors
    ...
    model_sd, optim_sd = get_train_state(model, optimizer)       # every rank; rank 0 gets them
    set_train_state(model, optimizer, model_sd, optim_sd)        # every rank passes the full dicts

FSDP2 works on CPU with gloo (parameters are DTensors sharded on dim 0 of a 1-D ``cpu`` mesh);
the mesh follows the device of the model's parameters.

Scalar (0-dim) parameters (``logit_scale``, ``logit_bias``, ``distill_logit_scale``) cannot be
sharded by FSDP2 ("fully_shard doesn't support scalar parameters"). They are left out of FSDP
(``ignored_params``): they stay plain, replicated tensors and a post-accumulate-grad hook
averages their gradient over ranks, exactly what FSDP does for the sharded ones. Their shape,
the state-dict keys and the checkpoints stay those of the plain model.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_state_dict, set_model_state_dict,
                                                     set_state_dict)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import DTensor

try:  # torch >= 2.6
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
except ImportError:  # pragma: no cover - torch 2.4 / 2.5
    from torch.distributed._composable.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1

__all__ = ["wrap_fsdp", "is_fsdp", "get_train_state", "set_train_state", "get_model_state",
           "unsharded", "fsdp_wrap_units"]

StateDict = Dict[str, Any]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` or any submodule is sharded (FSDP2 ``fully_shard`` or FSDP1)."""
    return any(isinstance(m, (FSDPModule, FSDP1)) for m in model.modules())


def fsdp_wrap_units(model: nn.Module) -> List[nn.Module]:
    """The units FSDP shards one by one, in module order: what every submodule that defines
    ``fsdp_units() -> List[nn.Module]`` (the image and text towers: their transformer blocks)
    declares, each unit once. Modules without the method are sharded with their parent."""
    blocks: List[nn.Module] = []
    seen: Set[int] = set()
    for module in model.modules():
        units = getattr(module, "fsdp_units", None)
        if not callable(units):
            continue
        for unit in units():
            if id(unit) not in seen:
                seen.add(id(unit))
                blocks.append(unit)
    return blocks


def _policy(mixed_precision: Optional[str]) -> MixedPrecisionPolicy:
    """None → full precision; "bf16" / "fp16" → params in that dtype, gradients reduced in fp32."""
    if mixed_precision is None:
        return MixedPrecisionPolicy()
    if mixed_precision not in _DTYPES:
        raise ValueError(f"mixed_precision must be None, 'bf16' or 'fp16', got {mixed_precision!r}")
    return MixedPrecisionPolicy(param_dtype=_DTYPES[mixed_precision], reduce_dtype=torch.float32)


def _mesh(model: nn.Module) -> DeviceMesh:
    """1-D mesh over all ranks on the device type of the model's parameters ("cpu" with gloo)."""
    device = next(model.parameters()).device
    return init_device_mesh(device.type, (dist.get_world_size(),))


def _average_grad_over_ranks(params: Set[nn.Parameter], group: dist.ProcessGroup) -> None:
    """Hook each trainable parameter so that its accumulated gradient is averaged over ranks.

    Averaging the accumulated ``.grad`` is idempotent on the already-averaged part, so gradient
    accumulation over several backward passes stays correct.
    """
    world = dist.get_world_size(group)

    def hook(param: torch.Tensor) -> None:
        dist.all_reduce(param.grad, group=group)  # SUM then divide: gloo has no AVG
        param.grad.div_(world)

    for param in params:
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(hook)


def wrap_fsdp(model: nn.Module, mixed_precision: Optional[str] = None,
              reshard_after_forward: bool = True) -> nn.Module:
    """Shard ``model`` in place with FSDP2: each transformer block, then the root. Returns it.

    Needs ``torch.distributed`` initialised and the model on its final device (CPU → gloo mesh).
    Build the optimizer afterwards. Module names and state-dict keys do not change; parameters
    become DTensors sharded on dim 0 (scalars stay plain, see the module docstring).
    ``reshard_after_forward`` applies to the blocks (True: free gathered block parameters after
    forward, gather again in backward; False: keep them until backward, more memory, less
    communication); the root keeps FSDP's default (not resharded between forward and backward).
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("wrap_fsdp needs torch.distributed initialised (init_process_group)")
    if is_fsdp(model):
        raise RuntimeError("the model is already FSDP-wrapped")
    mesh = _mesh(model)
    scalars = {p for p in model.parameters() if p.ndim == 0}
    common = {"mesh": mesh, "mp_policy": _policy(mixed_precision), "ignored_params": scalars}
    for block in fsdp_wrap_units(model):
        fully_shard(block, reshard_after_forward=reshard_after_forward, **common)
    fully_shard(model, reshard_after_forward=None if reshard_after_forward else False, **common)
    _average_grad_over_ranks(scalars, mesh.get_group())
    return model


def _options() -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _storages(tensors: Iterable[Any]) -> Set[int]:
    """Storage addresses of the (local parts of the) given tensors."""
    out = set()
    for t in tensors:
        if isinstance(t, torch.Tensor):
            t = t.to_local() if isinstance(t, DTensor) else t
            out.add(t.untyped_storage().data_ptr())
    return out


def _unalias(tree: Any, live: Set[int]) -> Any:
    """Clone the tensors of a nested dict/list that share storage with ``live`` ones."""
    if isinstance(tree, torch.Tensor):
        return tree.clone() if tree.untyped_storage().data_ptr() in live else tree
    if isinstance(tree, dict):
        return {k: _unalias(v, live) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_unalias(v, live) for v in tree)
    return tree


def get_train_state(model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> Tuple[StateDict, StateDict]:
    """(model state, optimizer state), full, unsharded, on CPU; same format plain or wrapped.

    Model keys are the plain model's (no ``module.`` / ``_orig_mod.`` prefix). The optimizer
    state is keyed by parameter FQN: ``{"state": {fqn: {...}}, "param_groups": [{..., "params":
    [fqn, ...]}]}``, with every param-group key kept (``lr_scale``, ``base_lr``, ...).
    Collective when ``torch.distributed`` is initialised: every rank calls it and only rank 0
    receives the dicts (the others get empty dicts). A fresh optimizer gives an empty ``state``.
    The returned tensors never alias the live parameters or optimizer state.
    """
    had_state = bool(optimizer.state)
    model_state, optim_state = get_state_dict(model, optimizer, options=_options())
    live = _storages(model.state_dict().values())
    live |= _storages(t for s in optimizer.state.values() for t in s.values())
    model_state, optim_state = _unalias(model_state, live), _unalias(optim_state, live)
    if not had_state:  # get_state_dict runs a zero-gradient, lr=0 step to create the state
        optimizer.state.clear()
        if optim_state:
            optim_state["state"] = {}
    return model_state, optim_state


def get_model_state(model: nn.Module) -> StateDict:
    """The consolidated model state alone (for export or a plain evaluation copy); the same
    rules as :func:`get_train_state` (collective, rank 0 receives it, CPU, plain keys)."""
    state = get_model_state_dict(model, options=_options())
    return _unalias(state, _storages(model.state_dict().values()))


def _shallow_copy(optim_state: StateDict) -> StateDict:
    """Copy the containers (set_state_dict mutates them), not the tensors."""
    return {"state": {k: dict(v) for k, v in optim_state["state"].items()},
            "param_groups": [dict(g) for g in optim_state["param_groups"]]}


def _tuples_back(optimizer: torch.optim.Optimizer, before: List[Dict[str, Any]]) -> None:
    """Give back tuple group entries (``betas``) that the state-dict round trip made lists."""
    for group, old in zip(optimizer.param_groups, before):
        for key, value in group.items():
            if key != "params" and isinstance(value, list) and isinstance(old.get(key), tuple):
                group[key] = tuple(value)


def set_train_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: StateDict,
                    optim_state: StateDict) -> None:
    """Load :func:`get_train_state`'s dicts into a plain or wrapped model at any world size.

    Collective when wrapped: every rank calls it with the full dicts (e.g. each rank reads the
    checkpoint file with ``map_location="cpu"``); each keeps its own shard. Strict on model keys.
    The inputs are not modified.
    """
    if not model_state or not optim_state:
        raise ValueError("set_train_state needs the full state on every rank (get_train_state "
                         "returns it on rank 0 only: read it from the file on each rank)")
    if any(isinstance(k, int) for k in optim_state.get("state", {})):
        raise ValueError("optimizer state keyed by parameter index (optimizer.state_dict()); "
                         "set_train_state expects get_train_state's FQN-keyed state")
    for group, saved in zip(optimizer.param_groups, optim_state["param_groups"]):
        for key, value in saved.items():  # keys added after construction (``base_lr`` …)
            if key != "params":
                group.setdefault(key, value)
    if not optim_state.get("state"):
        # no optimizer state yet (a stateless optimizer, or saved before any step): torch's
        # set_state_dict cannot load an empty state; the groups' values are all there is
        set_model_state_dict(model, dict(model_state),
                             options=StateDictOptions(full_state_dict=True))
        for group, saved in zip(optimizer.param_groups, optim_state["param_groups"]):
            group.update({k: v for k, v in saved.items() if k != "params"})
        optimizer.state.clear()
        return
    before = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    set_state_dict(model, optimizer, model_state_dict=dict(model_state),
                   optim_state_dict=_shallow_copy(optim_state),
                   options=StateDictOptions(full_state_dict=True))
    _tuples_back(optimizer, before)


@contextlib.contextmanager
def unsharded(model: nn.Module) -> Iterator[nn.Module]:
    """Make submodule calls outside the root forward work (``encoders()["student"].encode_image``).

    FSDP2 gathers a block's parameters in that block's own forward hooks, but the parameters held
    by the root (patch embedding, positions, final norms, projections, text embedding) are only
    gathered by the root's forward. Inside this context they are gathered; the blocks still
    gather themselves. Collective: every rank must enter it and run the same forwards (the same
    number of batches). A no-op for plain models.
    """
    if not is_fsdp(model):
        yield model
        return
    if not isinstance(model, FSDPModule):
        raise ValueError("unsharded() needs the wrapped root (the meta-architecture), "
                         f"got a {type(model).__name__} inside it")
    state = model._get_fsdp_state()
    state._lazy_init()  # mark this module the root before any block forward does (private API)
    model.unshard()
    try:
        yield model
    finally:
        model.reshard()
