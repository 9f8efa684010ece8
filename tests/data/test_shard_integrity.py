"""A shard that ends early is found whatever the bytes at the cut, and counted once per epoch."""
from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest

from cosmos.data.shard_writer import write_shards
from cosmos.data.shards import ShardFile, _fresh_state
from cosmos.data.tar_reader import TarIntegrityError, scan_members
from tests.helpers import DEMO_CONFIG, run_train, tiny_overrides
from tests.shard_fixtures import scene_samples, write_scene_shards, write_tar
from tests.data.test_shards import make_stream

PER_SHARD = 8


def _members(path):
    with tarfile.open(path) as tar:
        return tar.getmembers()


def _cut(path: str, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.fixture()
def shard(tmp_path) -> str:
    return write_tar(str(tmp_path / "s-000.tar"), scene_samples(0, PER_SHARD))


def test_cuts_that_leave_whole_members_are_detected(shard) -> None:
    """Cuts that leave only whole members (tarfile takes the first for a complete archive)."""
    members = _members(shard)
    fifth = members[3 * 4]  # first member of the 5th sample (3 members per sample)
    png = members[3]  # 2nd sample's image, its data followed by zero padding
    assert png.size % 512, "the case needs padding after the data"
    cuts = {"at a member boundary": fifth.offset,
            "in the zero padding after a member": png.offset_data + png.size + 7,
            "inside a header": fifth.offset + 100}
    original = open(shard, "rb").read()
    for what, size in cuts.items():
        with open(shard, "wb") as f:
            f.write(original[:size])
        if size == fifth.offset:  # tarfile reads this as a complete, shorter archive
            assert len(tarfile.open(shard).getmembers()) == 3 * 4
        f = ShardFile(shard)
        assert f.truncated, what
        assert "end-of-archive" in f.problem or "header" in f.problem, (what, f.problem)
        assert len(f) == (4 if size >= fifth.offset else 2), what
        f.close()


def _reader(data: bytes):
    """``read(n)`` over ``data``, as a stream gives it."""
    buffer = bytearray(data)

    def read(n: int) -> bytes:
        out = bytes(buffer[:n])
        del buffer[:n]
        return out
    return read


def test_every_cut_point_is_detected(shard) -> None:
    """Exhaustive over one archive (every 97th byte): any shorter file fails a check."""
    data = open(shard, "rb").read()
    assert len(list(scan_members(_reader(data)))) == 3 * PER_SHARD
    end = max(m.offset_data + m.size for m in _members(shard))
    for size in list(range(0, end + 1024, 97)) + [end + 1023]:
        with pytest.raises(TarIntegrityError):
            list(scan_members(_reader(data[:size])))


def test_zeroed_tail_is_caught_by_the_shard_index(tmp_path) -> None:
    """Bytes replaced by zeros after a member look like a proper end: only the index can tell."""
    out = str(tmp_path / "shards")
    samples = ({"__key__": key, "png": files["png"], "txt": files["txt"]}
               for key, files in scene_samples(0, 2 * PER_SHARD))
    write_shards(samples, out, "train", PER_SHARD)
    path = os.path.join(out, "train-000001.tar")
    start = _members(path)[2 * 3].offset  # samples 3.. of the shard become zeros
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(size - start))
    f = ShardFile(path)
    assert len(f) == 3 and f.problem == "3 samples where its index lists 8"
    f.close()
    assert ShardFile(os.path.join(out, "train-000000.tar")).problem is None
    index = json.load(open(os.path.join(out, "train-index.json")))
    assert index["sample_counts"] == [PER_SHARD, PER_SHARD]


@pytest.fixture()
def cut_dir(tmp_path) -> str:
    d = str(tmp_path / "cut")
    os.makedirs(d)
    write_scene_shards(d, 2, PER_SHARD)
    path = f"{d}/s-001.tar"
    _cut(path, _members(path)[3 * 5].offset)  # at the 6th sample's first header: 5 remain
    return d


def test_counted_once_per_epoch(cut_dir, caplog) -> None:
    urls = f"{cut_dir}/s-{{000..001}}.tar"
    stream = make_stream(urls, resampled=False, interleave=2)
    st, passes = _fresh_state(), []
    for _ in stream.spec.samples(0, st):
        if st["epoch"] == 3:
            break
        passes.append(st["epoch"])
    assert passes.count(0) == PER_SHARD + 5
    # passes 0, 1, 2 and the start of 3 (its first sample ends the loop): once per pass
    assert st["stats"]["truncated_shard"] == 4
    assert caplog.text.count(f"damaged shard {cut_dir}/s-001.tar: ends at byte") == 4

    resampled = make_stream(urls, resampled=True, interleave=1)
    st = _fresh_state()
    samples = resampled.spec.samples(0, st)
    for _ in range(200):
        next(samples)
    replay, bad_draws = _fresh_state(), []
    for _ in range(st["draws"]):
        url, draw = resampled.spec.next_shard(0, replay)
        if url.endswith("s-001.tar"):
            bad_draws.append(draw)
    # an epoch of a resampled stream is len(shards) = 2 draws
    assert st["stats"]["truncated_shard"] == len({d // 2 for d in bad_draws}) < len(bad_draws)


@pytest.mark.slow
def test_cli_names_the_cut_shard_and_counts_it_once(tmp_path, synthetic_shards) -> None:
    shards = str(tmp_path / "shards")
    shutil.copytree(os.path.dirname(synthetic_shards), shards)
    cut = f"{shards}/s-002.tar"
    members = _members(cut)
    png = [m for m in members if m.name.endswith(".png")][4]
    _cut(cut, png.offset_data + png.size + 3)  # in the zero padding: tarfile sees no error
    out = str(tmp_path / "run")
    res = run_train(["--config-file", DEMO_CONFIG,
                     *tiny_overrides(out, f"{shards}/s-{{000..003}}.tar", 5),
                     "dataloader.train.resampled=False"])
    assert res.returncode == 0, res.stderr[-3000:]
    log = open(os.path.join(out, "log.txt")).read()
    warnings = [line for line in log.splitlines() if "damaged shard" in line]
    assert len(warnings) == 1 and f"{cut}: ends at byte" in warnings[0], warnings
    rows = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    counts = [r["data/truncated_shard"] for r in rows if "data/truncated_shard" in r]
    assert counts and counts[-1] == 1


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_reader_agrees_with_tarfile_on_each_format(fmt) -> None:
    """Long names (pax ``path`` records, GNU ``L`` members), non-ASCII names, directories."""
    import io
    names = ["dir/" + "x" * 150 + ".jpg", "ünï.json", "short.txt"]
    if fmt == tarfile.USTAR_FORMAT:
        names = ["dir/" + "x" * 90 + ".jpg", "short.json", "short.txt"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for i, name in enumerate(names):
            data = bytes(range(i, i + 7)) * (100 * i + 1)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    ours = [(m.name, m.data) for m in scan_members(_reader(data))]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        theirs = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    assert ours == theirs and len(ours) == 3
