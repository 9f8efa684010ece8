"""W&B logging (``train.report_to=[tensorboard,wandb]``): an offline run records the scalars of
metrics.jsonl at the same steps and the run config; a missing package or an unknown writer is
one clear line."""
from __future__ import annotations

import glob
import json
import os
import struct
import sys

import pytest

from cosmos.utils.errors import ConfigError, CosmosError
from cosmos.utils.events import report_writers
from tests.helpers import DEMO_CONFIG, run_train, tiny_overrides


def read_wandb_records(path: str):
    """Records of a ``.wandb`` file: a LevelDB-style log (7-byte file header ``:W&B``, 32 KiB
    blocks, chunks with a (crc32, length, type) header) of ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST chunk of a record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.slow
def test_offline_run_holds_the_scalars_and_config(tmp_path, synthetic_shards, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'cosmos-ssl[wandb]')")
    run_dir = tmp_path / "run"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_dir").mkdir()
    res = run_train(["--config-file", DEMO_CONFIG, *tiny_overrides(str(run_dir), synthetic_shards,
                                                                   max_iter=3),
                     "train.report_to=[tensorboard,wandb]", "train.wandb.project=cosmos-test"])
    assert res.returncode == 0, res.stderr[-3000:]
    files = glob.glob(str(tmp_path / "wandb_dir" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    run_id = open(run_dir / "wandb_run_id").read().strip()
    assert files[0].endswith(f"run-{run_id}.wandb")
    history, config = {}, {}
    for record in read_wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                   for item in record.history.item}
            history.setdefault(row.pop("_step"), {}).update(
                {k: v for k, v in row.items() if not k.startswith("_")})
        elif kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key: json.loads(item.value_json) for item in items})
    expected = {}
    for line in open(run_dir / "metrics.jsonl"):
        row = json.loads(line)
        expected.setdefault(row.pop("iter"), {}).update(row)
    assert set(history) == set(expected) and 3 in history
    for step, row in expected.items():
        assert history[step] == pytest.approx(row, rel=1e-12)
    assert "clip_loss" in history[3] and "eval/student/synthetic/retrieval/i2t_R@1" in history[3]
    assert config["train"]["max_iter"] == 3 and config["train"]["report_to"] == [
        "tensorboard", "wandb"]
    assert os.listdir(run_dir / "tensorboard")  # TensorBoard still written beside it


def test_missing_package_and_unknown_writer(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    with pytest.raises(CosmosError, match=r"pip install 'cosmos-ssl\[wandb\]'"):
        report_writers({"report_to": ["wandb"]}, str(tmp_path))
    with pytest.raises(ConfigError, match="unknown \\['comet'\\]; known: tensorboard, wandb"):
        report_writers({"report_to": "tensorboard,comet"}, str(tmp_path))
    assert report_writers({"report_to": []}, str(tmp_path)) == []
    assert os.listdir(tmp_path) == []
