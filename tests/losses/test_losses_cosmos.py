"""LIST InfoNCE, the COSMOS distillation loss and SigLIP against direct transcriptions of the
equations (arXiv 2412.01814; the official ``src/open_clip/loss.py``), hand values, and a
2-process gloo run vs one process."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cosmos.losses import (ClipInfoNCE, CosmosDistillLoss, SigLIPLoss, clip_list_loss, infonce,
                           list_infonce, sigmoid_loss)
from cosmos.registry import LOSSES


# -- direct transcriptions of the loss equations (official src/open_clip/loss.py) ------------------

def _nce(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """½·[CE(s·a bᵀ, diag) + CE(s·b aᵀ, diag)] on explicit logits."""
    y = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(s * a @ b.T, y) + F.cross_entropy(s * b @ a.T, y))


def _list(p, q, s) -> torch.Tensor:
    """LIST(P, Q; s) as the plain double loop."""
    total = 0.0
    for a in p:
        for b in q:
            total = total + _nce(a, b, s)
    return total / (len(p) * len(q))


def _distill(x, y, u, w, s) -> torch.Tensor:
    u, w = [t.detach() for t in u], [t.detach() for t in w]
    return 0.25 * (_list(x, u, s) + _list(x, w, s) + _list(y, u, s) + _list(y, w, s))


def _blocks(n: int, rows: int = 4, dim: int = 16, seed: int = 0, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(rows, dim, generator=g), dim=-1).requires_grad_(grad)
            for _ in range(n)]


def _log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z))


# -- single process ----------------------------------------------------------------------------

@pytest.mark.parametrize("gather", ["local", "official"])
def test_list_infonce_equals_loop_with_gradients(gather: str) -> None:
    a, b = _blocks(2, seed=1, grad=True), _blocks(8, seed=2, grad=True)
    s = torch.tensor(7.0)
    loop, fast = _list(a, b, s), list_infonce(a, b, s, gather)
    assert torch.allclose(fast, loop, atol=1e-6)
    for g1, g2 in zip(torch.autograd.grad(fast, a + b), torch.autograd.grad(loop, a + b)):
        assert torch.allclose(g1, g2, atol=1e-6)
    for value in (ClipInfoNCE(gather)(a, b, s), clip_list_loss(a, b, s, gather)):
        assert torch.allclose(value, loop, atol=1e-6)
    assert torch.allclose(infonce(a[0], b[0], s, gather), _nce(a[0], b[0], s), atol=1e-6)


@pytest.mark.slow
def test_cosmos_distill_equals_four_lists_and_detaches_teacher() -> None:
    x, y = _blocks(8, seed=3, grad=True), _blocks(8, seed=4, grad=True)
    u, w = _blocks(2, seed=5, grad=True), _blocks(2, seed=6, grad=True)
    s = torch.tensor(14.2857)
    loss = CosmosDistillLoss()(x, y, u, w, s)
    assert torch.allclose(loss, _distill(x, y, u, w, s), atol=1e-6)
    assert torch.allclose(CosmosDistillLoss("official")(x, y, u, w, s), loss, atol=1e-6)
    loss.backward()
    assert all(t.grad is None for t in u + w)
    assert all(t.grad is not None for t in x + y)


def test_collinear_features_give_ln_n() -> None:
    same = F.normalize(torch.ones(4, 16), dim=-1)  # every logit equal → every NCE = ln(4)
    s = torch.tensor(14.2857)
    distill = CosmosDistillLoss()([same] * 8, [same] * 8, [same] * 2, [same] * 2, s)
    assert abs(float(distill) - math.log(4)) < 1e-5
    assert abs(float(clip_list_loss([same] * 2, [same] * 8, s)) - math.log(4)) < 1e-5


def test_siglip_2x2_by_hand() -> None:
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    s, b = torch.tensor(2.0), torch.tensor(-1.0)
    # logits s·img·txtᵀ + b = [[2·1 − 1, 2·0.6 − 1], [2·0 − 1, 2·0.8 − 1]] = [[1, .2], [−1, .6]]
    # labels [[+1, −1], [−1, +1]]
    expected = -(_log_sigmoid(1.0) + _log_sigmoid(-0.2) + _log_sigmoid(1.0) + _log_sigmoid(0.6)) / 2
    assert abs(float(sigmoid_loss(img, txt, s, b)) - expected) < 1e-6
    assert abs(float(SigLIPLoss()(img, txt, s, b)) - expected) < 1e-6
    # no bias anywhere → 0: logits [[2, 1.2], [0, 1.6]]
    no_bias = -(_log_sigmoid(2.0) + _log_sigmoid(-1.2) + _log_sigmoid(0.0) + _log_sigmoid(1.6)) / 2
    assert abs(float(sigmoid_loss(img, txt, s)) - no_bias) < 1e-6
    assert abs(float(SigLIPLoss(init_logit_bias=None)(img, txt, s)) - no_bias) < 1e-6
    own = SigLIPLoss(init_logit_bias=-1.0)  # the loss's own learnable bias when none is passed
    assert abs(float(own(img, txt, s).detach()) - expected) < 1e-6 and own.logit_bias.requires_grad


def test_siglip_identical_features_scale_10_bias_minus_10() -> None:
    n, s, b = 4, torch.tensor(10.0), torch.tensor(-10.0)
    eye = torch.eye(n)  # image = text, orthonormal rows: diagonal logit 0, off-diagonal −10
    expected = (n * math.log(2) + n * (n - 1) * math.log1p(math.exp(-10.0))) / n
    assert abs(float(sigmoid_loss(eye, eye, s, b)) - expected) < 1e-6
    same = F.normalize(torch.ones(n, 8), dim=-1)  # collinear: every logit 0 → N²·ln2 / N
    assert abs(float(SigLIPLoss()(same, same, s, b)) - n * math.log(2)) < 1e-5


def test_gather_mode_validated_and_names_registered() -> None:
    for cls in (ClipInfoNCE, CosmosDistillLoss, SigLIPLoss):
        with pytest.raises(ValueError, match="gather"):
            cls(gather="everything")
    with pytest.raises(ValueError, match="gather"):
        SigLIPLoss(gather="official")
    assert LOSSES.get("clip_infonce") is ClipInfoNCE
    assert LOSSES.get("cosmos_infonce") is CosmosDistillLoss
    assert LOSSES.get("siglip") is SigLIPLoss


# -- two processes (gloo) against one process with the combined batch --------------------------

WORLD, GLOBAL_B = 2, 8
CASES = [("infonce", "local"), ("infonce", "official"), ("clip", "local"), ("clip", "official"),
         ("distill", "local"), ("distill", "official"), ("siglip", "local")]


def _features() -> dict:
    """Fixed global batch: name → (blocks, GLOBAL_B, 6), normalized."""
    g = torch.Generator().manual_seed(0)
    sizes = (("img", 2), ("txt", 8), ("x", 8), ("y", 8), ("u", 2), ("w", 2))
    return {k: F.normalize(torch.randn(n, GLOBAL_B, 6, generator=g), dim=-1) for k, n in sizes}


def _loss(f: dict, name: str, gather: str) -> torch.Tensor:
    s = torch.tensor(5.0)
    if name == "infonce":
        return infonce(f["img"][0], f["txt"][0], s, gather)
    if name == "clip":
        return ClipInfoNCE(gather)(list(f["img"]), list(f["txt"]), s)
    if name == "distill":
        return CosmosDistillLoss(gather)(list(f["x"]), list(f["y"]), list(f["u"]), list(f["w"]), s)
    return SigLIPLoss(gather)(f["img"][0], f["txt"][0], s, torch.tensor(-2.0))


def _grads(f: dict, loss: torch.Tensor) -> dict:
    """Gradient of ``loss`` per feature name (names without gradient left out)."""
    grads = torch.autograd.grad(loss, list(f.values()), allow_unused=True)
    return {k: g for k, g in zip(f, grads) if g is not None}


def _worker(rank: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    rows = slice(rank * GLOBAL_B // WORLD, (rank + 1) * GLOBAL_B // WORLD)
    results = {}
    for name, gather in CASES:
        local = {k: v[:, rows].clone().requires_grad_(True) for k, v in _features().items()}
        loss = _loss(local, name, gather)
        results[(name, gather)] = (float(loss.detach()), _grads(local, loss))
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_gradients_match_combined_batch(tmp_path) -> None:
    """DDP averages gradients over ranks, so the effective gradient on rank r's rows is
    (gradient on rank r) / W. local: that equals the combined-batch gradient (SigLIP too: the
    ranks' losses, each normalised by the local N, sum to W × the combined loss). official:
    every rank's full loss back-propagates into its own slot only → combined gradient / W."""
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "res")),
             nprocs=WORLD, join=True)
    ranks = [torch.load(f"{tmp_path / 'res'}.{r}", weights_only=False) for r in range(WORLD)]
    for name, gather in CASES:
        full = {k: v.clone().requires_grad_(True) for k, v in _features().items()}
        loss = _loss(full, name, "local")
        ref = _grads(full, loss)
        values = [r[(name, gather)][0] for r in ranks]
        assert abs(sum(values) / WORLD - float(loss.detach())) < 1e-5, (name, gather)
        assert set(ranks[0][(name, gather)][1]) == set(ref), (name, gather)
        if name == "distill":
            assert not {"u", "w"} & set(ref)  # teacher blocks carry no gradient
        for key, g_full in ref.items():
            ddp = torch.cat([r[(name, gather)][1][key] for r in ranks], dim=1) / WORLD
            expected = g_full / WORLD if gather == "official" else g_full
            assert torch.allclose(ddp, expected, atol=1e-6), (name, gather, key)
