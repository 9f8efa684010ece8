"""Streaming shard sources: a real HTTP server on 127.0.0.1 and ``pipe:`` commands.

The samples must equal the local-file run's (same in-shard shuffle buffer), broken transfers
are counted per shard with the URL in the log, and bad sources fail at construction in one line.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket

import pytest
import torch

from cosmos.data.shards import STREAM_SHUFFLE, StreamedShard, _fresh_state, _rng
from cosmos.utils.errors import ConfigError, DataError
from tests.helpers import DEMO_CONFIG, run_train, tiny_overrides
from tests.shard_fixtures import serve_directory, write_scene_shards
from tests.data.test_shards import make_stream, take

NUM_SHARDS, PER_SHARD = 4, 10


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("stream_shards"))
    write_scene_shards(d, NUM_SHARDS, PER_SHARD)
    return d


@pytest.fixture(scope="module")
def server(shards):
    srv = serve_directory(shards)
    yield srv
    srv.gate.set()
    srv.shutdown()


def _same_batches(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["key"] == y["key"]
        assert torch.equal(x["tokens"], y["tokens"])
        assert all(torch.equal(p, q) for p, q in zip(x["global_crops"], y["global_crops"]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_http_and_pipe_give_the_local_samples(shards, server, num_workers) -> None:
    local = take(make_stream(f"{shards}/s-{{000..003}}.tar", seed=5, num_workers=num_workers,
                             shard_shuffle=STREAM_SHUFFLE), 6)
    http = take(make_stream(f"{server.url}/s-{{000..003}}.tar", seed=5,
                            num_workers=num_workers), 6)
    pipe = take(make_stream(f"pipe:cat {shards}/s-{{000..003}}.tar", seed=5,
                            num_workers=num_workers), 6)
    _same_batches(local, http)
    _same_batches(local, pipe)
    keys = [k for b in http for k in b["key"]]
    assert len(set(keys)) > 12  # mixed from several shards


def test_a_pass_over_http_splits_shards_across_ranks_and_workers(server) -> None:
    seen = []
    for rank in range(2):
        stream = make_stream(f"{server.url}/s-{{000..003}}.tar", resampled=False, num_workers=2,
                             rank=rank, world_size=2)
        for g in stream._my_streams():
            st = _fresh_state()
            for sample in stream.spec.samples(g, st):
                if st["epoch"] > 0:
                    break
                seen.append(sample["key"])
    assert sorted(seen) == [f"train-{i:08d}" for i in range(NUM_SHARDS * PER_SHARD)]


def test_first_sample_arrives_before_the_download_ends(shards, server) -> None:
    """The server holds back the second half of the shard until the first sample is out."""
    server.gate.clear()
    shard = StreamedShard(f"{server.url}/gate/s-000.tar", shuffle=2, rng=_rng("x"))
    try:
        key, files = shard.next()  # would block (and the server time out) if it read it all
        assert key.startswith("train-") and set(files) == {"png", "txt", "json"}
        server.gate.set()
        keys = [key] + [shard.next()[0] for _ in range(PER_SHARD - 1)]
        assert shard.done and shard.problem is None
        assert sorted(keys) == [f"train-{i:08d}" for i in range(PER_SHARD)]
    finally:
        server.gate.set()
        shard.close()


def test_resume_on_http_continues_at_the_same_sample(server) -> None:
    urls = f"{server.url}/s-{{000..003}}.tar"
    straight = take(make_stream(urls, seed=2, interleave=2), 7)
    first = make_stream(urls, seed=2, interleave=2)
    take(first, 3)
    second = make_stream(urls, seed=2, interleave=2)
    second.load_state_dict(first.state_dict())
    _same_batches(straight[3:], take(second, 4))


def _pass(stream):
    st, seen = _fresh_state(), []
    for sample in stream.spec.samples(0, st):
        if st["epoch"] > 0:
            break
        seen.append(sample["key"])
    return seen, st["pass_end"]


def test_broken_transfers_are_counted_per_shard(shards, server, caplog) -> None:
    """404, a connection closed mid-shard, a command that fails: counted, named, not a crash."""
    caplog.set_level(logging.WARNING)
    cut = f"{server.url}/cut/s-001.tar"
    urls = [f"{server.url}/s-000.tar", f"{server.url}/nope.tar", cut,
            f"pipe:cat {shards}/s-002.tar; exit 3", f"pipe:cat {shards}/no-such-file.tar"]
    stream = make_stream(urls, resampled=False, max_bad_fraction=1.0)
    seen, counts = _pass(stream)
    assert counts["unreadable_shard"] == 2 and counts["truncated_shard"] == 2
    assert f"{server.url}/nope.tar" in caplog.text and "HTTP 404" in caplog.text
    assert f"{cut}: the connection closed with" in caplog.text
    assert "exit 3: command exited with status 3" in caplog.text
    assert "no-such-file.tar: command exited with status 1" in caplog.text
    # s-000 whole, s-002 whole (its command failed after the data), part of s-001
    from_001 = [k for k in seen if PER_SHARD <= int(k[-8:]) < 2 * PER_SHARD]
    assert 0 < len(from_001) < PER_SHARD
    assert len(seen) == 2 * PER_SHARD + len(from_001) == counts["samples"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_sources_fail_at_construction(shards) -> None:
    with pytest.raises(DataError, match=r"shard source 2 of 2 \(pipe:no-such-tool-xyz .*\): "
                                        r"command 'no-such-tool-xyz'.*not installed"):
        make_stream([f"{shards}/s-000.tar", "pipe:no-such-tool-xyz {0..3}.tar"])
    port = _free_port()
    with pytest.raises(DataError, match=rf"shard source 1 of 1 .*cannot reach 127.0.0.1:{port}"):
        make_stream(f"http://127.0.0.1:{port}/s-{{000..003}}.tar")
    with pytest.raises(ConfigError, match=r"source 2 of 2 \(.*s-001.tar\) has weight 0"):
        make_stream([f"{shards}/s-000.tar", f"{shards}/s-001.tar"], weights=[1, 0])
    with pytest.raises(ConfigError, match=r"has weight -1"):
        make_stream([f"{shards}/s-000.tar", f"{shards}/s-001.tar"], weights=[-1, 2])
    with pytest.raises(ConfigError, match=r"expands to 2 URL\(s\), some empty"):
        make_stream(f"{shards}/s-000.tar::{{,}}")
    with pytest.raises(ConfigError, match="no shard URLs given"):
        make_stream([])
    with pytest.raises(DataError, match=r"shard source 2 of 2 .*none of the 2 shards exists"):
        make_stream(f"{shards}/s-000.tar::{shards}/gone-{{0..1}}.tar")


def test_pipe_needs_only_the_shell_tools_it_names(shards) -> None:
    if shutil.which("gzip") is None:
        pytest.skip("gzip not installed: no compressed-pipe case")
    os.system(f"gzip -kf {shards}/s-003.tar")
    via_gzip = take(make_stream(f"pipe:gzip -dc {shards}/s-003.tar.gz", seed=1), 2)
    local = take(make_stream(f"{shards}/s-003.tar", seed=1, shard_shuffle=STREAM_SHUFFLE), 2)
    _same_batches(local, via_gzip)


# -- through tools/train_net.py ------------------------------------------------------------

MAX_ITER = 4


def _train(out: str, urls: str, *extra: str):
    return run_train(["--config-file", DEMO_CONFIG, *tiny_overrides(out, urls, MAX_ITER),
                      "train.checkpoint_period=2", *extra])


def _weights(run_dir: str) -> dict:
    return torch.load(os.path.join(run_dir, "student.pth"), weights_only=True)


def _same_weights(a: str, b: str) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, shards) -> str:
    out = str(tmp_path_factory.mktemp("local_run"))
    res = _train(out, f"{shards}/s-{{000..003}}.tar",
                 f"+dataloader.train.shard_shuffle={STREAM_SHUFFLE}")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.slow
def test_training_from_http_and_pipe_equals_local_files(local_run, shards, server,
                                                        tmp_path) -> None:
    for name, urls in (("http", f"{server.url}/s-{{000..003}}.tar"),
                       ("pipe", f"pipe:cat {shards}/s-{{000..003}}.tar")):
        out = str(tmp_path / name)
        res = _train(out, urls)
        assert res.returncode == 0, res.stderr[-3000:]
        _same_weights(local_run, out)
    assert any(p.startswith("/s-00") for p in server.requests)


@pytest.mark.slow
def test_kill_and_resume_on_http_equals_straight_run(local_run, server, tmp_path) -> None:
    out = str(tmp_path)
    urls = f"{server.url}/s-{{000..003}}.tar"
    killed = _train(out, urls, "train.hooks=[{_target_: tests.helpers.KillBeforeStep, step: 2}]")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert os.path.exists(os.path.join(out, "checkpoints", "model_0000002.pth"))
    resumed = _train(out, urls)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 2" in open(os.path.join(out, "log.txt")).read()
    _same_weights(local_run, out)  # = the uninterrupted run's weights


@pytest.mark.slow
def test_a_run_whose_sources_all_fail_stops_before_step_one(server, tmp_path) -> None:
    out = str(tmp_path / "run")
    res = _train(out, f"{server.url}/gone-{{000..003}}.tar")
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 50 shards in a row could not be read") and "HTTP 404" in last
    assert f"{server.url}/gone-00" in last and "Traceback" not in res.stderr
    assert not os.path.exists(os.path.join(out, "student.pth"))
    ckpts = os.path.join(out, "checkpoints")
    assert not os.path.isdir(ckpts) or not any(n.endswith(".pth") for n in os.listdir(ckpts))
    port = _free_port()
    res = _train(str(tmp_path / "run2"), f"http://127.0.0.1:{port}/s-{{000..003}}.tar")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(
        f"error: shard source 1 of 1 (http://127.0.0.1:{port}/s-{{000..003}}.tar): cannot reach")
