"""Exact RNG on resume: a timm tower with drop-path (random per step) trains bit-identically
through three kill -9 / resume cycles, because the global generator is saved and restored."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import DEMO_CONFIG, REPO, TRAIN_NET, run_train, tiny_overrides

MAX_ITER = 4
# a 2-block timm ViT whose residual branches are dropped at random (stochastic depth)
TIMM_DROP_PATH = ("model.model.visual={_target_: backbones.timm_vit, "
                  "model_name: vit_tiny_patch16_224, image_size: 32, output_dim: 16, depth: 2, "
                  "embed_dim: 32, num_heads: 2, patch_size: 16, drop_path_rate: 0.5}")


def _args(out: str, shards: str) -> list:
    return ["--config-file", DEMO_CONFIG, *tiny_overrides(out, shards, MAX_ITER),
            TIMM_DROP_PATH, "train.checkpoint_period=1", "evaluation={}"]


def _checkpoint(run_dir: str) -> dict:
    path = os.path.join(run_dir, "checkpoints", f"model_{MAX_ITER:07d}.pth")
    return torch.load(path, weights_only=True)


def _assert_equal_states(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal_states(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_states(x, y, f"{where}/{i}")
    else:
        assert a == b, f"{where}: {a} != {b}"


@pytest.mark.slow
def test_drop_path_tower_is_bit_identical_through_three_kills(tmp_path, synthetic_shards) -> None:
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    straight_proc = subprocess.Popen(  # runs beside the kill chain
        [sys.executable, TRAIN_NET, *_args(straight, synthetic_shards)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for kill_at in (1, 2, 3):  # killed before steps 2, 3 and 4, each after its checkpoint
        killed = run_train(_args(resumed, synthetic_shards)
                           + [f"train.hooks=[{{_target_: tests.helpers.KillBeforeStep, "
                              f"step: {kill_at}}}]"])
        assert killed.returncode == -9, killed.stderr[-2000:]
    finished = run_train(_args(resumed, synthetic_shards))
    assert finished.returncode == 0, finished.stderr[-3000:]
    _, err = straight_proc.communicate(timeout=300)
    assert straight_proc.returncode == 0, err[-3000:]

    log = open(os.path.join(resumed, "log.txt")).read()
    assert all(f"resumed at step {s}" in log for s in (1, 2, 3))
    a, b = _checkpoint(straight), _checkpoint(resumed)
    assert a["iter"] == b["iter"] == MAX_ITER
    _assert_equal_states(a["model"], b["model"], "model")
    _assert_equal_states(a["optimizer"], b["optimizer"], "optimizer")
    assert torch.equal(a["rng"], b["rng"])  # all 5,056 bytes of the generator's state
    # the tower really draws: its drop-path changes the generator during a step
    assert any(k.startswith("model.visual.trunk.blocks.1") for k in a["model"])


def test_rng_restored_after_the_first_batch_is_fetched() -> None:
    """A loader that draws from the global generator when its first batch is asked for (as
    torch's DataLoader does for its base seed) does not shift a resumed run's generator."""
    from cosmos.engine.trainer import _after_first

    torch.manual_seed(0)
    saved = torch.get_rng_state()
    torch.rand(5)  # the state moves on before the resume restores it

    def loader():
        torch.rand(2)  # the DataLoader's base-seed draw
        while True:
            yield {}

    batches = _after_first(loader(), lambda: torch.set_rng_state(saved))
    next(batches)
    assert torch.equal(torch.get_rng_state(), saved)
