"""Shared test utilities: tiny-shape overrides, a subprocess runner, and hooks used by configs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import List, Sequence

from cosmos.engine.hook_base import HookBase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
DEMO_CONFIG = os.path.join(REPO, "configs", "clip", "clip_tiny_synthetic.py")

# Keys shrunk wherever they appear in a config, so that every config runs a step in seconds.
TINY_VALUES = {
    "width": 32, "layers": 1, "heads": 2, "output_dim": 16, "image_size": 32, "size": 32,
    "patch_size": 16, "batch_size": 4, "num_samples": 16, "num_workers": 0, "global_size": 32,
    "local_size": 16,
}


def tiny_overrides(output_dir: str, urls: str, max_iter: int = 2) -> List[str]:
    """Overrides for the synthetic demo config that make it train in a second or two.

    ``urls``: small synthetic-scene shards (the ``synthetic_shards`` fixture, 32 px images).
    """
    return [
        f"dataloader.train.urls={urls}",
        f"train.output_dir={output_dir}", f"train.max_iter={max_iter}", "train.log_period=1",
        "train.eval_period=0", "model.model.visual.width=32", "model.model.visual.layers=1",
        "model.model.visual.heads=2", "model.model.visual.image_size=32",
        "model.model.visual.patch_size=16", "model.model.visual.output_dim=16",
        "model.model.text.width=32", "model.model.text.layers=1", "model.model.text.heads=2",
        "model.model.text.output_dim=16", "model.model.text.context_length=32",
        "dataloader.train.batch_size=4", "dataloader.train.num_workers=0",
        "dataloader.train.image_transform.size=32", "dataloader.train.tokenizer.context_length=32",
        "evaluation.synthetic.dataset.num_samples=8", "evaluation.synthetic.dataset.image_size=32",
        "evaluation.synthetic.transform.size=32",
        "evaluation.synthetic.tokenizer.context_length=32",
        "evaluation.segmentation.dataset.num_samples=4",
        "evaluation.segmentation.dataset.image_size=32",
        "evaluation.segmentation.tokenizer.context_length=32",
        "lr_multiplier.warmup_steps=1",
    ]


def run_train(args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run tools/train_net.py in a fresh interpreter (the way a user runs it)."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    env.pop("COSMOS_TRACEBACK", None)
    return subprocess.run([sys.executable, TRAIN_NET, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


class KillBeforeStep(HookBase):
    """SIGKILLs the process before step ``step + 1`` starts (after step ``step``'s checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def before_step(self) -> None:
        if self.trainer.iter == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SlowSteps(HookBase):
    """Sleeps ``seconds`` after every step (gives a signal time to arrive mid-run)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_step(self) -> None:
        import time
        time.sleep(self.seconds)


class KillDuringSave(HookBase):
    """SIGKILLs the process halfway through writing the checkpoint of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def before_train(self) -> None:
        import torch
        import cosmos.checkpoint.checkpointer as ckpt

        real_save, hook = torch.save, self

        def torn_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("iter") == hook.step:
                f.write(b"PK\x03\x04 partial checkpoint bytes")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)

        ckpt.torch.save = torn_save  # the module's reference; restored with the process


class ExplodeAtStep(HookBase):
    """Turns the loss into NaN at step ``step`` (for the NaN-guard test)."""

    def __init__(self, step: int, term: str = "clip_loss") -> None:
        self.step, self.term = step, term

    def before_step(self) -> None:
        if self.trainer.iter + 1 == self.step:
            model = self.trainer.model
            original = model.forward

            def forward(batch):
                out = original(batch)
                out[self.term] = out[self.term] * float("nan")
                out["loss"] = out[self.term]
                return out

            model.forward = forward


class DiskFullAtSave(HookBase):
    """Makes the checkpoint save of step ``step`` fail as a full disk does: ``torch.save``
    writes a few bytes, then raises torch's zip-writer error (``kind="torch"``) or
    ``OSError(ENOSPC)`` (``kind="oserror"``)."""

    def __init__(self, step: int, kind: str = "torch") -> None:
        self.step, self.kind = step, kind

    def before_train(self) -> None:
        import errno

        import cosmos.checkpoint.checkpointer as ckpt

        real_save, hook = ckpt.torch.save, self

        def full_disk_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("iter") == hook.step:
                f.write(b"PK\x03\x04 first bytes")
                if hook.kind == "oserror":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise RuntimeError("[enforce fail at inline_container.cc:672] . "
                                   "PytorchStreamWriter failed writing file data/3: "
                                   "file write failed")
            return real_save(obj, f, *args, **kwargs)

        ckpt.torch = _TorchWithSave(ckpt.torch, full_disk_save)


class _TorchWithSave:
    """``torch`` with another ``save`` (for the checkpointer module only)."""

    def __init__(self, torch_module, save) -> None:
        self._torch, self.save = torch_module, save

    def __getattr__(self, name):
        return getattr(self._torch, name)
