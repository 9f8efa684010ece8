"""Distributed training on CPU with gloo: environment detection, a DDP step against one process
with the combined batch (CLIP, SigLIP, COSMOS), multi-process train_net runs and stop signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cosmos.config import LazyConfig, instantiate
from cosmos.engine.defaults import build_batch_augment
from cosmos.engine.trainer import move_to_device
from cosmos.distributed.env import DistEnv, detect_env, expand_nodelist
from tests.helpers import DEMO_CONFIG, REPO, TRAIN_NET, run_train, tiny_overrides
from tests.evaluation.test_eval_net import TINY as COSMOS_TINY
from tests.config.test_configs import point_at_test_shards, shrink

WORLD = 2
CONFIGS = {
    "clip": os.path.join(REPO, "configs", "clip", "clip_tiny_synthetic.py"),
    "siglip": os.path.join(REPO, "configs", "clip", "siglip_tiny_synthetic.py"),
    "cosmos": os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py"),
}


# -- environment ------------------------------------------------------------------------------

def test_nodelist_expansion() -> None:
    assert expand_nodelist("gpu[01-03,07],cpu5") == ["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]
    assert expand_nodelist("vm") == ["vm"]
    assert expand_nodelist("a[8-10]") == ["a8", "a9", "a10"]


def test_env_prefers_torchrun_then_slurm() -> None:
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NODELIST": "node[3-4]", "SLURM_JOB_NUM_NODES": "2"}
    env = detect_env(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (5, 8, 1, 4)
    assert env.master_addr == "node3" and env.source == "slurm"
    assert env.master_port == detect_env(dict(slurm, SLURM_PROCID="0")).master_port  # same job
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
                "MASTER_PORT": "1234"}
    env = detect_env({**slurm, **torchrun})
    assert (env.rank, env.world_size, env.master_port, env.source) == (1, 2, 1234, "torchrun")
    assert detect_env({}) == DistEnv()
    single_task = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_ID": "1"}
    assert not detect_env(single_task).distributed


# -- one DDP step == one step on the combined batch ---------------------------------------------

def _tiny_config(name: str, urls: str):
    cfg = LazyConfig.load(CONFIGS[name])
    shrink(cfg)
    point_at_test_shards(cfg, urls)
    cfg.dataloader.train.batch_size = 4 * WORLD
    return cfg


def _slice(batch, rank: int):
    """Rows ``rank·N … (rank+1)·N`` of every tensor (and every tensor of a list) of a batch."""
    n = batch["batch_size"] // WORLD
    rows = slice(rank * n, (rank + 1) * n)
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[rows]
        elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            out[key] = [v[rows] for v in value]
        else:
            out[key] = value
    out["batch_size"] = n
    return out


def _step(model: torch.nn.Module, forward, batch) -> tuple:
    losses = forward(move_to_device(batch, torch.device("cpu")))
    losses["loss"].backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


def _ddp_worker(rank: int, name: str, cfg_path: str, batch_path: str, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    cfg = LazyConfig.load(cfg_path)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    batch = _slice(torch.load(batch_path, weights_only=False), rank)
    torch.save(_step(model, ddp, batch), f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ddp_step_matches_combined_batch(name, tmp_path, synthetic_shards) -> None:
    """Two gloo processes with half the batch each: their mean loss is the combined batch's loss
    and the DDP-averaged gradient of every parameter is the combined batch's gradient (the losses
    gather columns with gradient; docs/distributed.md states the scaling)."""
    cfg = _tiny_config(name, synthetic_shards)
    cfg_path = str(tmp_path / "tiny.yaml")
    LazyConfig.save(cfg, cfg_path)
    cfg = LazyConfig.load(cfg_path)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    augment = build_batch_augment(cfg)  # the photometric half of the fast multi-crop
    batch = augment(batch, "cpu") if augment is not None else batch
    torch.save(batch, tmp_path / "batch.pt")
    mp.spawn(_ddp_worker, args=(name, cfg_path, str(tmp_path / "batch.pt"),
                                f"file://{tmp_path / 'rdzv'}", str(tmp_path / "out")),
             nprocs=WORLD, join=True)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    ref_losses, ref_grads = _step(model, model, batch)
    ranks = [torch.load(f"{tmp_path / 'out'}.{r}", weights_only=False) for r in range(WORLD)]
    for key, value in ref_losses.items():
        mean = sum(r[0][key] for r in ranks) / WORLD
        assert mean == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert set(ranks[0][1]) == set(ref_grads) and len(ref_grads) > 10
    worst = 0.0
    for key, grad in ref_grads.items():
        torch.testing.assert_close(ranks[0][1][key], ranks[1][1][key], rtol=0, atol=0)  # synced
        scale = grad.abs().max().clamp_min(1e-6)
        worst = max(worst, float((ranks[0][1][key] - grad).abs().max() / scale))
    assert worst < 1e-4, f"largest relative gradient difference {worst:.2e}"


# -- tools/train_net.py with several processes --------------------------------------------------

def _metrics(run_dir) -> list:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
@pytest.mark.distributed
def test_train_net_two_processes_logs_per_rank_and_resumes_at_one(tmp_path,
                                                                  synthetic_shards) -> None:
    run = tmp_path / "run"
    res = run_train(["--num-procs", "2", "--config-file", DEMO_CONFIG,
                     *tiny_overrides(str(run), synthetic_shards, max_iter=3)])
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / "log.txt").is_file() and (run / "log.txt.rank1").is_file()
    assert "process 1 of 2" in (run / "log.txt.rank1").read_text()
    # console output comes from rank 0 only: one progress line per step
    assert res.stdout.count("step 3/3") == 1, res.stdout[-2000:]
    rows = [r for r in _metrics(run) if "loss" in r]
    assert [r["iter"] for r in rows] == [1, 2, 3]
    assert rows[-1]["pairs_per_s"] > 0
    ckpt = torch.load(run / "checkpoints" / "model_0000003.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])  # consolidated, unwrapped
    assert len(ckpt["data"]["streams"]) == 2  # both ranks' data positions
    res = run_train(["--config-file", DEMO_CONFIG, *tiny_overrides(str(run), synthetic_shards, 4)])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed at step 3" in res.stdout
    assert [r["iter"] for r in _metrics(run) if "loss" in r] == [1, 2, 3, 4]


def test_num_gpus_without_gpus_is_one_line_error(tmp_path, synthetic_shards) -> None:
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs: --num-gpus 2 is valid here")
    res = run_train(["--num-gpus", "2", "--config-file", DEMO_CONFIG,
                     *tiny_overrides(str(tmp_path / "run"), synthetic_shards)])
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: --num-gpus 2 but this machine has")
    assert len(res.stderr.strip().splitlines()) == 1


# -- a stop signal: every rank finishes its step, one checkpoint, exact resume -----------------

@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_saves_at_step_boundary_and_resume_matches(tmp_path, synthetic_shards) -> None:
    """SIGTERM to both processes mid-run: they agree on the step, save its checkpoint and exit
    143; running the command again finishes with the same losses as an uninterrupted run."""
    procs = 2
    steps = 8
    ref = tmp_path / "ref"
    common = ["--config-file", DEMO_CONFIG]
    launch = ["--num-procs", str(procs)] if procs > 1 else []
    slow = "+train.hooks=[{_target_: tests.helpers.SlowSteps, seconds: 0.3}]"

    def ov(d):
        return [*tiny_overrides(str(d), synthetic_shards, steps), "train.checkpoint_period=100"]

    res = run_train([*launch, *common, *ov(ref)])
    assert res.returncode == 0, res.stderr[-2000:]

    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, TRAIN_NET, *launch, *common, *ov(run), slow], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").is_file() and len(_metrics(run)) >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # like SLURM: every process of the job gets it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    saved = sorted(os.listdir(run / "checkpoints"))
    stopped_at = max(r["iter"] for r in _metrics(run) if "loss" in r)
    assert 2 <= stopped_at < steps and saved == ["last_checkpoint", f"model_{stopped_at:07d}.pth"]
    assert "caught SIGTERM" in (run / "log.txt").read_text()

    res = run_train([*launch, *common, *ov(run), slow])
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed at step {stopped_at}" in res.stdout
    want = {r["iter"]: r["loss"] for r in _metrics(ref) if "loss" in r}
    got = {r["iter"]: r["loss"] for r in _metrics(run) if "loss" in r}
    assert sorted(got) == list(range(1, steps + 1))
    for it in range(1, steps + 1):
        assert got[it] == pytest.approx(want[it], abs=1e-6), it


# -- FSDP: sharded training, consolidated checkpoints ------------------------------------------

@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_run_at_two_processes_resumes_at_one(tmp_path, synthetic_shards) -> None:
    """COSMOS with train.distributed.strategy=fsdp on 2 gloo processes: evaluation and export
    work on the sharded model, and its checkpoint resumes in a 1-process run."""
    run = tmp_path / "run"
    cosmos = CONFIGS["cosmos"]
    overrides = [f"train.output_dir={run}", "train.max_iter=2", "train.log_period=1",
                 f"dataloader.train.urls={synthetic_shards}", "dataloader.train.batch_size=2",
                 *COSMOS_TINY, "train.distributed.strategy=fsdp"]
    res = run_train(["--num-procs", "2", "--config-file", cosmos, *overrides])
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["iter"] == 2 and "teacher/synthetic/retrieval/t2i_R@1" in results
    ckpt = torch.load(run / "checkpoints" / "model_0000002.pth", weights_only=True)
    student = torch.load(run / "student.pth", weights_only=True)
    for key, value in student.items():  # the export is the consolidated (unsharded) weights
        torch.testing.assert_close(value, ckpt["model"]["student.encoder." + key])
    assert all(isinstance(v, torch.Tensor) and type(v) is torch.Tensor
               for v in ckpt["model"].values())
    res = run_train(["--config-file", cosmos, *overrides[:-1], "train.max_iter=3",
                     "train.distributed.strategy=fsdp"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed at step 2" in res.stdout
    assert [r["iter"] for r in _metrics(run) if "loss" in r] == [1, 2, 3]
