"""LIST InfoNCE, the COSMOS distillation loss and SigLIP: hand values, transcriptions, and the
gradients of a 2-process gloo run against one process with the combined batch."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cosmos.losses import ClipInfoNCE, CosmosDistillLoss, SigLIPLoss, list_infonce, sigmoid_loss
from cosmos.registry import LOSSES


def _nce(a, b, s):
    logits = s * a @ b.T
    y = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))


def _blocks(n, rows=4, dim=16, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(rows, dim, generator=g), dim=-1).requires_grad_(grad)
            for _ in range(n)]


def test_list_infonce_equals_loop_with_gradients() -> None:
    a, b = _blocks(2, seed=1, grad=True), _blocks(8, seed=2, grad=True)
    s = torch.tensor(7.0)
    loop = sum(_nce(x, y, s) for x in a for y in b) / 16
    fast = list_infonce(a, b, s)
    assert torch.allclose(fast, loop, atol=1e-6)
    for g1, g2 in zip(torch.autograd.grad(fast, a + b), torch.autograd.grad(loop, a + b)):
        assert torch.allclose(g1, g2, atol=1e-6)
    assert torch.allclose(ClipInfoNCE()(a, b, s), loop, atol=1e-6)
    assert torch.allclose(ClipInfoNCE(gather="official")(a, b, s), loop, atol=1e-6)


def test_cosmos_distill_equals_four_lists_and_detaches_teacher() -> None:
    x, y = _blocks(8, seed=3, grad=True), _blocks(8, seed=4, grad=True)
    u, w = _blocks(2, seed=5, grad=True), _blocks(2, seed=6, grad=True)
    s = torch.tensor(14.2857)
    def lst(p, q):
        return sum(_nce(i, j, s) for i in p for j in q) / (len(p) * len(q))
    ref = 0.25 * (lst(x, u) + lst(x, w) + lst(y, u) + lst(y, w))
    loss = CosmosDistillLoss()(x, y, u, w, s)
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()
    assert all(t.grad is None for t in u + w) and all(t.grad is not None for t in x + y)
    same = [F.normalize(torch.ones(4, 16), dim=-1)]
    assert abs(float(CosmosDistillLoss()(same * 8, same * 8, same * 2, same * 2, s)) - math.log(4)) < 1e-5
    assert LOSSES.get("cosmos_infonce") is CosmosDistillLoss


def test_siglip_by_hand() -> None:
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    s, b = torch.tensor(2.0), torch.tensor(-1.0)
    # logits s·img·txtᵀ + b = [[2−1, 1.2−1], [0−1, 1.6−1]] = [[1, .2], [−1, .6]]
    ls = lambda z: math.log(1 / (1 + math.exp(-z)))  # noqa: E731
    expected = -(ls(1.0) + ls(-0.2) + ls(1.0) + ls(0.6)) / 2
    assert abs(float(sigmoid_loss(img, txt, s, b)) - expected) < 1e-6
    loss = SigLIPLoss(init_logit_bias=-1.0)
    assert abs(float(loss(img, txt, s).detach()) - expected) < 1e-6
    assert loss.logit_bias.requires_grad and LOSSES.get("siglip") is SigLIPLoss


def test_gather_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="gather"):
        ClipInfoNCE(gather="everything")


# -- two processes (gloo) against one process with the combined batch --------------------------

def _features(seed: int):
    g = torch.Generator().manual_seed(seed)
    return {k: F.normalize(torch.randn(n, 8, 6, generator=g), dim=-1)
            for k, n in (("img", 2), ("txt", 8), ("x", 8), ("y", 8), ("u", 2), ("w", 2))}


def _losses(f, gather):
    s = torch.tensor(5.0)
    return {
        "clip": ClipInfoNCE(gather)(list(f["img"]), list(f["txt"]), s),
        "distill": CosmosDistillLoss(gather)(list(f["x"]), list(f["y"]), list(f["u"]), list(f["w"]), s),
        "siglip": SigLIPLoss(-2.0)(f["img"][0], f["txt"][0], s),
    }


def _worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    results = {}
    for gather in ("local", "official"):
        full = _features(0)
        for name in ("clip", "distill", "siglip"):
            if gather == "official" and name == "siglip":
                continue
            local = {k: v[:, rank * 4:(rank + 1) * 4].clone().requires_grad_(True) for k, v in full.items()}
            loss = _losses(local, gather)[name]
            keys = [k for k in local if local[k].grad is None]
            grads = torch.autograd.grad(loss, [local[k] for k in keys], allow_unused=True)
            results[(gather, name)] = (float(loss.detach()), {k: g for k, g in zip(keys, grads) if g is not None})
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_process_gradients_match_combined_batch(tmp_path) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_worker, args=(2, init, str(tmp_path / "res")), nprocs=2, join=True)
    ranks = [torch.load(f"{tmp_path / 'res'}.{r}", weights_only=False) for r in range(2)]
    full = {k: v.clone().requires_grad_(True) for k, v in _features(0).items()}
    for name in ("clip", "distill", "siglip"):
        loss = _losses(full, "local")[name]
        keys = [k for k in full]
        grads = dict(zip(keys, torch.autograd.grad(loss, [full[k] for k in keys], allow_unused=True)))
        for gather in ("local", "official") if name != "siglip" else ("local",):
            per_rank = [r[(gather, name)] for r in ranks]
            if name != "siglip":  # InfoNCE losses: the ranks' mean equals the combined loss
                mean = sum(value for value, _ in per_rank) / 2
                assert abs(mean - float(loss.detach())) < 1e-5, (gather, name)
            for key, g_full in grads.items():
                if g_full is None or key not in per_rank[0][1]:
                    continue
                # DDP averages gradients over ranks: rank r's rows hold (grad on rank r) / 2
                ddp = torch.cat([per_rank[r][1][key] for r in range(2)], dim=1) / 2
                # local: exactly the combined-batch gradient (SigLIP too: each rank normalises
                # by its local batch, and the ranks' losses sum to twice the combined loss);
                # official: every rank's full loss back-propagates into its own slot only → 1/W
                expected = g_full / 2 if gather == "official" else g_full
                assert torch.allclose(ddp, expected, atol=1e-5), (gather, name, key, float((ddp / expected).nanmean()), float((ddp - expected).abs().max()))
