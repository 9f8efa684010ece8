"""Ablations build only what they use: every config in configs/ablations/ trains under 2-process
DDP (gloo), no parameter is left without a gradient, the flag ablations drop their unused
modules while the parameters they share start as the full model's, and checkpoints say what
they hold (a mismatch is one line)."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from cosmos.checkpoint import Checkpointer, load_checkpoint, model_metadata
from cosmos.config import LazyConfig, instantiate
from cosmos.engine.defaults import build_batch_augment, build_step_hooks, load_model_weights
from cosmos.engine.trainer import move_to_device
from cosmos.utils.errors import CheckpointError, ConfigError
from tests.helpers import REPO, run_train
from tests.config.test_configs import point_at_test_shards, shrink

pytestmark = pytest.mark.slow

ABLATIONS = sorted(glob.glob(os.path.join(REPO, "configs", "ablations", "*.py")))
FULL = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
NO_CROSS = os.path.join(REPO, "configs", "ablations", "no_cross_attention.py")
NO_DISTILL = os.path.join(REPO, "configs", "ablations", "no_distillation.py")
CROSS_MODAL = ("image_cross_pooler", "text_cross_pooler", "image_token_mapping",
               "text_token_mapping")


def _name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _tiny(path: str, urls: str, *overrides: str):
    cfg = LazyConfig.load(path)
    shrink(cfg)
    point_at_test_shards(cfg, urls)
    return LazyConfig.apply_overrides(cfg, list(overrides))


def _built(path: str, urls: str, *overrides: str):
    """(config, model built with seed 0) of the tiny twin of ``path``."""
    cfg = _tiny(path, urls, *overrides)
    torch.manual_seed(0)
    return cfg, instantiate(cfg.model)


@pytest.mark.distributed
@pytest.mark.parametrize("path", ABLATIONS, ids=_name)
def test_ablation_trains_three_steps_under_ddp(path, tmp_path, synthetic_shards) -> None:
    """The issue's report: the flag ablations died at step 2 under DDP (unused parameters)."""
    cfg = _tiny(path, synthetic_shards)
    no_distillation = path == NO_DISTILL
    if not no_distillation:  # the run without a teacher keeps its evaluation (student only)
        cfg.evaluation = None
    yaml = str(tmp_path / "tiny.yaml")
    LazyConfig.save(cfg, yaml)
    run = tmp_path / "run"
    res = run_train(["--num-procs", "2", "--config-file", yaml, f"train.output_dir={run}",
                     "train.max_iter=3", "train.log_period=1", "train.eval_period=0"],
                    timeout=900)  # generous: a loaded machine, two processes
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("step 3/3") == 1, res.stdout[-2000:]
    ckpt = load_checkpoint(str(run / "checkpoints" / "model_0000003.pth"))
    meta_arch = type(instantiate(cfg.model)).__name__
    assert ckpt["meta"]["meta_arch"] == meta_arch
    if no_distillation:
        assert ckpt["meta"] == {"meta_arch": "COSMOS", "cross_attention": False,
                                "distillation": False, "teacher": False}
        assert not any(k.startswith("teacher.") for k in ckpt["model"])
        assert (run / "student.pth").is_file() and not (run / "teacher.pth").exists()
        results = (run / "eval" / "results.json").read_text()
        assert '"student/' in results and "teacher" not in results
        assert "ema_momentum" not in (run / "metrics.jsonl").read_text()


@pytest.mark.parametrize("path", [FULL, *ABLATIONS], ids=_name)
def test_every_parameter_gets_a_gradient(path, synthetic_shards) -> None:
    """One step (single process): DDP without find_unused_parameters needs this."""
    cfg, model = _built(path, synthetic_shards)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    augment = build_batch_augment(cfg)
    batch = augment(batch, "cpu") if augment is not None else batch
    model(move_to_device(batch, torch.device("cpu")))["loss"].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_flag_ablations_hold_only_what_they_use(synthetic_shards) -> None:
    _, full = _built(FULL, synthetic_shards)
    _, no_cross = _built(NO_CROSS, synthetic_shards)
    _, no_distill = _built(NO_DISTILL, synthetic_shards)
    full_state = full.state_dict()
    assert all(hasattr(full.student, part) for part in CROSS_MODAL)
    # no cross-attention: teacher and distillation temperature, no poolers / token mappings
    assert not any(part in n for n, _ in no_cross.named_parameters() for part in CROSS_MODAL)
    assert hasattr(no_cross, "teacher") and hasattr(no_cross.student, "distill_logit_scale")
    # no distillation: no teacher (nor EMA pairs), no cross-modal modules, no temperature
    assert not hasattr(no_distill, "teacher") and no_distill.ema_parameters() == ([], [])
    assert set(no_distill.state_dict()) == {k for k in full_state
                                            if k.startswith("student.encoder.")}
    assert set(no_distill.encoders()) == {"student"}
    assert "distill_logit_scale" not in no_distill.extra_metrics()
    cfg = _tiny(NO_DISTILL, synthetic_shards)
    assert not any(type(h).__name__ == "EMAHook" for h in build_step_hooks(cfg, no_distill))
    assert any(type(h).__name__ == "EMAHook" for h in build_step_hooks(cfg, full))
    # the parameters they share start exactly as the full model's (same seed)
    for model in (no_cross, no_distill):
        for key, value in model.state_dict().items():
            assert torch.equal(value, full_state[key]), key


def test_student_and_meta_architecture_must_agree(synthetic_shards) -> None:
    """A student built with other flags than the meta-architecture is one ConfigError."""
    cfg = _tiny(FULL, synthetic_shards, "model.student.cross_attention=False")
    with pytest.raises(ConfigError, match="needs the cross-attention poolers"):
        instantiate(cfg.model)


def test_checkpoint_metadata_mismatch_is_one_line(tmp_path, synthetic_shards) -> None:
    _, full = _built(FULL, synthetic_shards)
    _, no_cross = _built(NO_CROSS, synthetic_shards)
    saver = Checkpointer(str(tmp_path / "ckpt"), metadata=model_metadata(no_cross))
    path = saver.save(3, {"iter": 3, "model": no_cross.state_dict()})
    assert load_checkpoint(path)["meta"] == {"meta_arch": "COSMOS", "cross_attention": False,
                                             "distillation": True, "teacher": True}
    with pytest.raises(CheckpointError) as err:
        load_model_weights(full, path)
    line = str(err.value)
    assert "\n" not in line and "COSMOS(cross_attention=False)" in line
    assert "COSMOS(cross_attention=True)" in line and "model.cross_attention=False" in line
    load_model_weights(no_cross, path)  # the right model loads it
    # a checkpoint without metadata (written before it existed) is not checked
    old = str(tmp_path / "old.pth")
    torch.save({"iter": 1, "model": full.state_dict()}, old)
    load_model_weights(full, old)


def test_eval_only_with_the_wrong_config_exits_2(tmp_path, synthetic_shards) -> None:
    """From the command line: one line, exit 2, nothing written."""
    _, no_distill = _built(NO_DISTILL, synthetic_shards)
    saver = Checkpointer(str(tmp_path / "ckpt"), metadata=model_metadata(no_distill))
    path = saver.save(1, {"iter": 1, "model": no_distill.state_dict()})
    cfg = _tiny(FULL, synthetic_shards)
    yaml = str(tmp_path / "full.yaml")
    LazyConfig.save(cfg, yaml)
    run = tmp_path / "run"
    res = run_train(["--eval-only", "--config-file", yaml, "--checkpoint", path,
                     f"train.output_dir={run}"])
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "model.distillation=False" in errors[0] and "teacher=False" in errors[0]
    assert not (run / "eval").exists()
