"""Bad input gives one clear line (what and where), no traceback, and overwrites nothing."""
from __future__ import annotations

from tests.helpers import DEMO_CONFIG, run_train, tiny_overrides


def _error_line(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [x for x in res.stderr.strip().splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, res.stderr[-2000:]
    return lines[0]


def test_missing_config_file(tmp_path) -> None:
    line = _error_line(run_train(["--config-file", str(tmp_path / "nope.py")]))
    assert line == f"error: config file not found: {tmp_path / 'nope.py'}"


def test_syntax_error_in_config(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("train = dict(\n  max_iter=3,\n  seed=)\n")
    line = _error_line(run_train(["--config-file", str(bad)]))
    assert f"syntax error in {bad} line 3" in line


def test_unknown_key_suggests(tmp_path, synthetic_shards) -> None:
    line = _error_line(run_train(["--config-file", DEMO_CONFIG,
                                  *tiny_overrides(str(tmp_path), synthetic_shards),
                                  "optimizer.lrr=0.1"]))
    assert "unknown config key 'optimizer.lrr'" in line and "'optimizer.lr'" in line


def test_unknown_registry_name_lists_names(tmp_path, synthetic_shards) -> None:
    line = _error_line(run_train(["--config-file", DEMO_CONFIG,
                                  *tiny_overrides(str(tmp_path), synthetic_shards),
                                  "model.loss._target_=losses.clip_infonc"]))
    assert line.startswith("error: model.loss: unknown losses 'clip_infonc'")
    assert "did you mean 'clip_infonce'" in line and "registered losses:" in line


def test_unwritable_output_dir(tmp_path, synthetic_shards) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    line = _error_line(run_train(["--config-file", DEMO_CONFIG,
                                  *tiny_overrides(str(blocker / "run"), synthetic_shards)]))
    assert f"output directory {blocker / 'run'} is not writable" in line
    assert blocker.read_text() == "keep me"


def test_corrupt_init_checkpoint(tmp_path, synthetic_shards) -> None:
    corrupt = tmp_path / "weights.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    line = _error_line(run_train(["--config-file", DEMO_CONFIG,
                                  *tiny_overrides(str(tmp_path / "run"), synthetic_shards),
                                  f"train.init_checkpoint={corrupt}"]))
    assert line.startswith(f"error: cannot read checkpoint {corrupt}")
    assert corrupt.read_bytes() == b"this is not a checkpoint"


def test_corrupt_only_checkpoint_in_run_dir(tmp_path, synthetic_shards) -> None:
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "model_0000002.pth").write_bytes(b"garbage")
    (ckpt_dir / "last_checkpoint").write_text("model_0000002.pth\n")
    line = _error_line(run_train(["--config-file", DEMO_CONFIG,
                                  *tiny_overrides(str(tmp_path / "run"), synthetic_shards)]))
    assert line.startswith(f"error: cannot read checkpoint {ckpt_dir / 'model_0000002.pth'}")
    assert (ckpt_dir / "model_0000002.pth").read_bytes() == b"garbage"


def test_wrong_kwarg_names_key_path(tmp_path, synthetic_shards) -> None:
    line = _error_line(run_train(["--config-file", DEMO_CONFIG,
                                  *tiny_overrides(str(tmp_path), synthetic_shards),
                                  "+model.model.visual.widht=3"]))
    assert line.startswith("error: model.model.visual:") and "widht" in line
