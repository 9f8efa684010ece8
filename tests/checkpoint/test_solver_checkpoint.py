"""Schedules, parameter groups, and the atomic checkpointer."""
from __future__ import annotations

import math
import os
import stat

import pytest
import torch

from cosmos.checkpoint import Checkpointer, load_checkpoint
from cosmos.models import DualEncoder, TextTransformer, VisionTransformer
from cosmos.solver import Constant, WarmupCosine, get_param_groups
from cosmos.utils.atomic import AtomicFile, atomic_write, atomic_write_text
from cosmos.utils.errors import CheckpointError


def test_warmup_cosine_values() -> None:
    s = WarmupCosine(total_steps=10, warmup_steps=2)
    assert s(0) == 0.5 and s(1) == 1.0 and s(2) == 1.0
    assert s(6) == pytest.approx(0.5)  # halfway through the cosine part (4 of 8 steps)
    assert s(10) == pytest.approx(0.0) and s(50) == pytest.approx(0.0)
    f = WarmupCosine(total_steps=4, final_value=0.1)
    assert f(2) == pytest.approx(0.1 + 0.9 * 0.5) and f(4) == pytest.approx(0.1)
    assert Constant(0.3)(123) == 0.3


def test_param_groups_exclude_norms_biases_scalars() -> None:
    model = DualEncoder(VisionTransformer(32, 16, 16, 1, 2, output_dim=8),
                        TextTransformer(8, 50, 16, 1, 2, output_dim=8))
    decay, no_decay = get_param_groups(model, weight_decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert {"logit_scale", "visual.class_embedding", "visual.ln_pre.weight",
            "visual.transformer.resblocks.0.attn.in_proj_bias", "text.ln_final.bias"} <= skipped
    assert {"visual.conv1.weight", "visual.positional_embedding", "visual.proj",
            "text.token_embedding.weight", "text.text_projection",
            "text.transformer.resblocks.0.attn.in_proj_weight"} <= decayed
    assert len(decayed) + len(skipped) == len(names)


def test_checkpointer_atomic_pointer_and_keep_last(tmp_path) -> None:
    ck = Checkpointer(str(tmp_path), max_to_keep=2)
    for step in (1, 2, 3):
        ck.save(step, {"iter": step, "w": torch.full((2,), float(step))})
    assert [os.path.basename(p) for p in ck.all_checkpoints()] == ["model_0000002.pth",
                                                                   "model_0000003.pth"]
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000003.pth"
    assert ck.load_latest()["iter"] == 3
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_corrupt_newest_falls_back_to_older(tmp_path) -> None:
    ck = Checkpointer(str(tmp_path))
    ck.save(1, {"iter": 1})
    ck.save(2, {"iter": 2})
    (tmp_path / "model_0000002.pth").write_bytes(b"\x00" * 10)
    assert ck.load_latest()["iter"] == 1


def test_stale_pointer_and_temporaries(tmp_path) -> None:
    ck = Checkpointer(str(tmp_path))
    ck.save(4, {"iter": 4})
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth\n")
    (tmp_path / ".model_0000010.pth.abc.tmp").write_bytes(b"partial")
    ck2 = Checkpointer(str(tmp_path))  # a new run removes leftovers of a killed save
    assert not (tmp_path / ".model_0000010.pth.abc.tmp").exists()
    assert ck2.load_latest()["iter"] == 4


def test_load_refuses_code_in_pickles(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"obj": math.sqrt}, path)  # a function reference: not allowed with weights_only
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(str(path))


def test_atomic_writes_get_the_umask_permissions(tmp_path) -> None:
    """Checkpoints and plots are readable by the project group like any file open() creates
    (mkstemp alone would leave them 0600)."""
    old = os.umask(0o022)
    try:
        path = Checkpointer(str(tmp_path)).save(1, {"w": torch.zeros(2)})
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        os.umask(0o077)
        atomic_write_text(str(tmp_path / "private.txt"), "x")
        assert stat.S_IMODE(os.stat(tmp_path / "private.txt").st_mode) == 0o600
    finally:
        os.umask(old)


def test_atomic_file_commits_whole_or_not_at_all(tmp_path) -> None:
    """A file written in pieces (a shard) appears complete on commit; abort, a failed write or a
    failed verification leave the old file and no temporary behind."""
    path = str(tmp_path / "data.bin")
    out = AtomicFile(path)
    out.file.write(b"abc")
    assert not os.path.exists(path)  # nothing visible before the commit
    out.file.write(b"def")
    out.commit()
    assert open(path, "rb").read() == b"abcdef"
    out = AtomicFile(path)
    out.file.write(b"partial")
    out.abort()

    def fail(f) -> None:
        f.write(b"torn")
        raise OSError("disk full")

    def reject(tmp: str) -> None:
        assert open(tmp, "rb").read() == b"new"  # verify sees the complete temporary file
        raise ValueError("does not reload")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    with pytest.raises(ValueError, match="does not reload"):
        atomic_write_text(path, "new", verify=reject)
    assert open(path, "rb").read() == b"abcdef"
    assert os.listdir(tmp_path) == ["data.bin"]
