"""FSDP2 wrapping and consolidated train state (cosmos/distributed/fsdp.py): a plain round trip,
and a 2-process CPU/gloo run compared with one process on the combined batch, both directions,
for CLIP and for COSMOS with its EMA teacher.

Why the 2-process step equals the 1-process step: each rank takes half of the batch; the losses
gather columns with gradient (gather="local"), so rank r's loss gradient is the combined-batch
gradient's contribution of its rows times W; FSDP (like DDP) averages gradients over the W ranks
(reduce-scatter / W; our hook for the unsharded scalars likewise), which gives exactly the
combined-batch gradient. AdamW then takes the same step up to float rounding. Adam's first step
is ≈ lr·g/(|g| + eps): gradients that are zero in exact arithmetic but ~1e-8 rounding noise in
float32 (attention key biases: softmax is shift-invariant) would move by noise/eps·lr, so the
tests use eps=1e-4, which keeps that below 1e-7 and is irrelevant for the real gradients (≥1e-3).
"""
from __future__ import annotations

import os
from typing import Dict, List

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cosmos.distributed.fsdp import (get_model_state, get_train_state, is_fsdp,
                                     set_train_state, unsharded, wrap_fsdp)
from cosmos.ema import ema_update
from cosmos.meta_arch import CLIP, COSMOS
from cosmos.models import build_cosmos_student, build_dual_encoder
from cosmos.registry import LOSSES
from cosmos.solver import get_param_groups

WORLD, B, VOCAB, CTX, MOMENTUM, ATOL = 2, 4, 256, 8, 0.9, 1e-5
TEXT = {"vocab_size": VOCAB, "context_length": CTX}
GROUP_KEYS = {"lr_scale": 0.5, "base_lr": 2e-3}  # the trainer's extra param-group keys


# -- tiny models, optimizer, fixed batches ------------------------------------------------------

def _clip(seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    return CLIP(build_dual_encoder("tiny-16", text=TEXT), LOSSES.get("clip_infonce")())


def _cosmos(seed: int = 0) -> COSMOS:
    torch.manual_seed(seed)
    model = COSMOS(build_cosmos_student("tiny-16", heads=2, text=TEXT),
                   LOSSES.get("clip_infonce")(), LOSSES.get("cosmos_infonce")())
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # a teacher that differs from the student, as after some EMA steps
        for p in model.teacher.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return model


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = get_param_groups(model, weight_decay=0.1)
    for group in groups:
        group.update(GROUP_KEYS)
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.98), eps=1e-4)


def _tokens(shape, g: torch.Generator) -> torch.Tensor:
    """(…, CTX) ids < VOCAB−1 with an EOT (VOCAB−1, the argmax) at varying positions."""
    tokens = torch.randint(1, VOCAB - 1, (*shape, CTX), generator=g)
    ends = torch.randint(2, CTX, shape, generator=g)
    pos = torch.arange(CTX)
    tokens[pos > ends[..., None]] = 0
    tokens[pos == ends[..., None]] = VOCAB - 1
    return tokens


def _clip_batch(rows: slice = slice(None)) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    batch = {"images": torch.randn(B, 3, 32, 32, generator=g), "tokens": _tokens((B,), g)}
    return {k: v[rows] for k, v in batch.items()}


def _cosmos_batch(rows: slice = slice(None)) -> Dict:
    g = torch.Generator().manual_seed(2)
    globals_ = [torch.randn(B, 3, 32, 32, generator=g) for _ in range(2)]
    locals_ = [torch.randn(B, 3, 16, 16, generator=g) for _ in range(2)]
    tokens = _tokens((B, 3), g)  # 2 global captions + 1 local
    return {"global_crops": [x[rows] for x in globals_], "local_crops": [x[rows] for x in locals_],
            "tokens": tokens[rows]}


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Dict) -> float:
    loss = model(batch)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _ema(model: COSMOS) -> None:
    ema_update(*model.ema_parameters(), MOMENTUM)


def _eval_images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))


# -- comparisons --------------------------------------------------------------------------------

def _assert_close_dicts(a: Dict, b: Dict, atol: float, what: str) -> None:
    assert set(a) == set(b), (what, sorted(set(a) ^ set(b))[:5])
    for key in a:
        diff = float((a[key].float() - b[key].float()).abs().max()) if a[key].numel() else 0.0
        assert diff <= atol, f"{what}: {key} differs by {diff:.2e}"


def _assert_close_optim(a: Dict, b: Dict, atol: float) -> None:
    assert set(a["state"]) == set(b["state"])
    for fqn, state in a["state"].items():
        _assert_close_dicts(state, b["state"][fqn], atol, f"optimizer state of {fqn}")
    assert len(a["param_groups"]) == len(b["param_groups"])
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert ga == gb  # hyper-parameters, custom keys and the FQN lists


def _groups(optimizer: torch.optim.Optimizer) -> List[Dict]:
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


# -- a. plain round trip ------------------------------------------------------------------------

def test_plain_round_trip_keeps_params_adam_state_and_group_keys() -> None:
    model = _clip()
    optimizer = _optimizer(model)
    empty_model, empty_optim = get_train_state(model, optimizer)
    assert empty_optim["state"] == {} and not optimizer.state  # no state made up before a step
    _step(model, optimizer, _clip_batch())
    model_sd, optim_sd = get_train_state(model, optimizer)
    assert list(model_sd) == list(model.state_dict())  # plain keys, no prefixes
    assert all(t.device.type == "cpu" for t in model_sd.values())
    assert set(optim_sd["state"]) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert optim_sd["param_groups"][0]["lr_scale"] == GROUP_KEYS["lr_scale"]

    fresh = _clip(seed=7)
    fresh_optim = _optimizer(fresh)
    for group in fresh_optim.param_groups:
        group.update(lr_scale=9.0, base_lr=9.0)
    set_train_state(fresh, fresh_optim, model_sd, optim_sd)
    _assert_close_dicts(fresh.state_dict(), model.state_dict(), 0.0, "params")
    assert _groups(fresh_optim) == _groups(optimizer)  # custom keys back, betas a tuple again
    _assert_close_optim(get_train_state(fresh, fresh_optim)[1], optim_sd, 0.0)
    a, b = optimizer.state_dict()["state"], fresh_optim.state_dict()["state"]
    assert set(a) == set(b) and all(float(a[i]["step"]) == float(b[i]["step"]) == 1.0 for i in a)
    assert not is_fsdp(fresh)

    # the returned tensors are copies: training on does not change them
    before = {k: v.clone() for k, v in model_sd.items()}
    exp_avg = optim_sd["state"]["model.visual.proj"]["exp_avg"].clone()
    _step(model, optimizer, _clip_batch())
    _assert_close_dicts(model_sd, before, 0.0, "saved params")
    assert torch.equal(optim_sd["state"]["model.visual.proj"]["exp_avg"], exp_avg)

    # state saved before any step loads as "no state", not as a zero state at step 1
    set_train_state(fresh, fresh_optim, empty_model, empty_optim)
    assert not fresh_optim.state
    with pytest.raises(ValueError, match="every rank"):  # a non-zero rank's empty dicts
        set_train_state(fresh, fresh_optim, {}, {})


# -- b, c. two processes ------------------------------------------------------------------------

def _worker(rank: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    rows = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
    save = (lambda obj, name: torch.save(obj, os.path.join(out, name))) if rank == 0 else (
        lambda obj, name: None)

    # CLIP: evaluation outside the root forward (before any training forward), then one step
    model = wrap_fsdp(_clip())
    optimizer = _optimizer(model)
    assert is_fsdp(model)
    with torch.no_grad(), unsharded(model):
        save(model.model.encode_image(_eval_images(), normalize=True), "encode_w2.pt")
    save(_step(model, optimizer, _clip_batch(rows)), "loss_w2.pt")
    state = get_train_state(model, optimizer)
    assert (len(state[0]) > 0) == (rank == 0)  # consolidated on rank 0 only
    save(state, "clip_w2.pt")

    # world-1 state into a 2-process FSDP model, then read back and take a step
    model = wrap_fsdp(_clip(seed=5), reshard_after_forward=False)
    optimizer = _optimizer(model)
    set_train_state(model, optimizer, *torch.load(os.path.join(out, "clip_w1.pt"),
                                                  weights_only=False))
    save(get_train_state(model, optimizer), "clip_w1_in_w2.pt")
    _step(model, optimizer, _clip_batch(rows))

    # COSMOS: one step and one EMA update on the sharded teacher / student
    model = wrap_fsdp(_cosmos())
    optimizer = _optimizer(model)
    _step(model, optimizer, _cosmos_batch(rows))
    _ema(model)
    save(get_model_state(model), "cosmos_w2.pt")

    # mixed precision runs (bf16 parameters and activations, fp32 gradient reduction)
    model = wrap_fsdp(_clip(), mixed_precision="bf16")
    save(_step(model, _optimizer(model), _clip_batch(rows)), "loss_bf16.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Dict:
    """World-1 references in this process, then one 2-process run that does every FSDP part."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo not available")
    out = tmp_path_factory.mktemp("fsdp")
    ref = {}
    model = _clip()
    optimizer = _optimizer(model)
    with torch.no_grad():
        ref["encode"] = model.model.encode_image(_eval_images(), normalize=True)
    ref["loss"] = _step(model, optimizer, _clip_batch())
    ref["clip"] = get_train_state(model, optimizer)
    torch.save(ref["clip"], out / "clip_w1.pt")
    _step(model, optimizer, _clip_batch())
    ref["clip_step2"] = model.state_dict()

    model = _cosmos()
    optimizer = _optimizer(model)
    _step(model, optimizer, _cosmos_batch())
    _ema(model)
    ref["cosmos"] = model.state_dict()

    mp.spawn(_worker, args=(f"file://{out / 'rendezvous'}", str(out)), nprocs=WORLD, join=True)
    load = lambda name: torch.load(out / name, weights_only=False)  # noqa: E731
    w2 = {name: load(f"{name}.pt") for name in
          ("encode_w2", "loss_w2", "clip_w2", "clip_w1_in_w2", "cosmos_w2", "loss_bf16")}
    return {"ref": ref, "w2": w2}


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_step_consolidates_to_the_world1_step(runs) -> None:
    """2-process FSDP step (half batch each) == 1-process step on the whole batch; the
    consolidated state loads into a plain model, and a second step agrees too."""
    ref, (model_sd, optim_sd) = runs["ref"], runs["w2"]["clip_w2"]
    model = _clip(seed=3)
    optimizer = _optimizer(model)
    set_train_state(model, optimizer, model_sd, optim_sd)
    _assert_close_dicts(model.state_dict(), ref["clip"][0], ATOL, "params after step 1")
    _assert_close_optim(get_train_state(model, optimizer)[1], ref["clip"][1], ATOL)
    assert _groups(optimizer)[0]["lr_scale"] == GROUP_KEYS["lr_scale"]
    _step(model, optimizer, _clip_batch())
    _assert_close_dicts(model.state_dict(), ref["clip_step2"], ATOL, "params after step 2")


@pytest.mark.slow
@pytest.mark.distributed
def test_world1_state_loads_into_fsdp(runs) -> None:
    """A 1-process state set into the 2-process FSDP model reads back unchanged."""
    model_sd, optim_sd = runs["w2"]["clip_w1_in_w2"]
    _assert_close_dicts(model_sd, runs["ref"]["clip"][0], 0.0, "params")
    _assert_close_optim(optim_sd, runs["ref"]["clip"][1], 0.0)


@pytest.mark.slow
@pytest.mark.distributed
def test_cosmos_fsdp_step_and_ema_match_world1(runs) -> None:
    """Sharded teacher and student line up: the consolidated teacher after step + EMA equals the
    1-process result (student too)."""
    w2, ref = runs["w2"]["cosmos_w2"], runs["ref"]["cosmos"]
    assert any(k.startswith("teacher.") for k in w2)
    _assert_close_dicts(w2, ref, ATOL, "COSMOS student and teacher")


@pytest.mark.slow
@pytest.mark.distributed
def test_evaluation_outside_root_forward_and_bf16(runs) -> None:
    """``unsharded`` makes ``encode_image`` work on the wrapped model; bf16 training runs."""
    assert torch.allclose(runs["w2"]["encode_w2"], runs["ref"]["encode"], atol=1e-6)
    assert torch.isfinite(torch.tensor(runs["w2"]["loss_bf16"]))
    assert abs(runs["w2"]["loss_bf16"] - runs["w2"]["loss_w2"]) < 0.1  # rank 0: bf16 vs fp32
