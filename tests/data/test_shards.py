"""The webdataset shard stream: resume at the exact sample, disjoint passes, bad data counted."""
from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
import torch
import webdataset as wds
from PIL import Image

from cosmos.data import ClipTokenizer
from cosmos.data.shards import ShardFile, ShardStream, _fresh_state, decode_sample, expand_urls
from cosmos.data.text_crops import TextCrop
from cosmos.data.multicrop import MultiCrop
from cosmos.utils.errors import BadSampleError, ConfigError, DataError
from tests.shard_fixtures import png_bytes, scene_samples, write_scene_shards, write_tar

NUM_SHARDS, PER_SHARD = 6, 10


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("shards"))
    write_scene_shards(d, NUM_SHARDS, PER_SHARD)
    return d


def make_stream(urls, **kwargs) -> ShardStream:
    args = dict(image_transform=MultiCrop(global_size=32, local_size=16, num_local=2),
                text_transform=TextCrop(num_captions=4), tokenizer=ClipTokenizer(context_length=32),
                batch_size=4)
    args.update(kwargs)
    return ShardStream(urls, **args)


def take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_expand_urls() -> None:
    assert expand_urls("a-{0..2}.tar") == [["a-0.tar", "a-1.tar", "a-2.tar"]]
    assert expand_urls("a-{00..01}.tar::b.tar") == [["a-00.tar", "a-01.tar"], ["b.tar"]]
    assert expand_urls(["x-{1,2}.tar", "y.tar"]) == [["x-1.tar", "x-2.tar"], ["y.tar"]]
    with pytest.raises(ConfigError, match="empty shard source"):
        expand_urls("a.tar::")


def test_reads_what_webdataset_reads(shard_dir) -> None:
    """Our tar index agrees with the webdataset library sample for sample."""
    url = f"{shard_dir}/s-001.tar"
    ours = ShardFile(url)
    theirs = list(wds.WebDataset(url, shardshuffle=False, empty_check=False))
    assert [k for k, _ in ours.samples] == [s["__key__"] for s in theirs]
    for i, ref in enumerate(theirs):
        key, files = ours.read(i)
        assert files == {ext: ref[ext] for ext in ("png", "txt", "json")}
    ours.close()


def test_decode_sample_captions_and_errors() -> None:
    img = png_bytes(Image.new("RGB", (8, 8), (200, 10, 10)))
    meta = {"long": ["A.", "B."], "n": 3, "url": "x", "alt": "y"}
    s = decode_sample("k", {"png": img, "txt": b"a raw caption",
                            "json": json.dumps(meta).encode()})
    assert s["captions"] == {"long": ["A.", "B."], "alt": "y", "raw_caption": "a raw caption"}
    assert s["image"].size == (8, 8) and s["image"].mode == "RGB"
    only = decode_sample("k", {"png": img, "json": b'{"long": "x"}'}, caption_keys=["long"])
    assert only["captions"] == {"long": "x"}
    cases = [({"txt": b"caption"}, "missing_image"),
             ({"jpg": b"\xff\xd8 not a jpeg", "txt": b"caption"}, "corrupt_image"),
             ({"png": img, "txt": b"   "}, "empty_caption"),
             ({"png": img, "json": b'{"long": []}'}, "empty_caption"),
             ({"png": img, "json": b"{not json"}, "bad_json")]
    for files, reason in cases:
        with pytest.raises(BadSampleError) as e:
            decode_sample("k", files)
        assert e.value.reason == reason


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_at_the_same_sample(shard_dir, num_workers) -> None:
    urls = f"{shard_dir}/s-{{000..005}}.tar"
    straight = take(make_stream(urls, num_workers=num_workers, seed=3), 7)
    first = make_stream(urls, num_workers=num_workers, seed=3)
    take(first, 3)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    second = make_stream(urls, num_workers=num_workers, seed=3)
    second.load_state_dict(state)
    resumed = take(second, 4)
    for a, b in zip(straight[3:], resumed):
        assert a["key"] == b["key"]
        assert torch.equal(a["tokens"], b["tokens"])
        assert all(torch.equal(x, y) for x, y in zip(a["global_crops"], b["global_crops"]))
        assert all(torch.equal(x, y) for x, y in zip(a["local_crops"], b["local_crops"]))
    keys = [k for b in straight for k in b["key"]]
    assert len(set(keys)) > 14  # samples are mixed, not one shard in order
    first_keys = [k for b in straight[:3] for k in b["key"]]
    assert first_keys != sorted(first_keys)


def test_seed_changes_the_stream(shard_dir) -> None:
    urls = f"{shard_dir}/s-{{000..005}}.tar"
    a = [k for b in take(make_stream(urls, seed=0), 3) for k in b["key"]]
    b = [k for b in take(make_stream(urls, seed=1), 3) for k in b["key"]]
    assert a != b


def test_one_pass_splits_shards_across_ranks_and_workers(shard_dir) -> None:
    """Non-resampled: 2 ranks x 3 workers = 6 streams read every sample once per pass."""
    urls = f"{shard_dir}/s-{{000..005}}.tar"
    seen = []
    for rank in range(2):
        stream = make_stream(urls, resampled=False, num_workers=3, rank=rank, world_size=2)
        for g in stream._my_streams():
            st = _fresh_state()
            for sample in stream.spec.samples(g, st):
                if st["epoch"] > 0:
                    break
                seen.append(sample["key"])
    assert len(seen) == NUM_SHARDS * PER_SHARD
    assert sorted(seen) == sorted(f"train-{i:08d}" for i in range(NUM_SHARDS * PER_SHARD))


def test_second_pass_is_reshuffled(shard_dir) -> None:
    stream = make_stream(f"{shard_dir}/s-{{000..005}}.tar", resampled=False)
    assert stream.spec.epoch_shards(0, 0) != stream.spec.epoch_shards(1, 0)
    assert sorted(stream.spec.epoch_shards(0, 0)) == sorted(stream.spec.epoch_shards(1, 0))


def test_too_few_shards_for_the_streams_is_an_error(shard_dir) -> None:
    with pytest.raises(DataError, match=r"6 shards for 2 ranks x 4 workers = 8 streams"):
        make_stream(f"{shard_dir}/s-{{000..005}}.tar", resampled=False, num_workers=4,
                    rank=0, world_size=2)
    make_stream(f"{shard_dir}/s-{{000..005}}.tar", resampled=True, num_workers=4, rank=0,
                world_size=2)  # resampled streams draw with replacement: fine


def test_source_weights(shard_dir) -> None:
    urls = [f"{shard_dir}/s-{{000..001}}.tar", f"{shard_dir}/s-{{002..005}}.tar"]
    stream = make_stream(urls, weights=[3.0, 1.0])
    st = _fresh_state()
    draws = [stream.spec.next_shard(0, st)[0] for _ in range(4000)]
    first = sum(u.endswith(("s-000.tar", "s-001.tar")) for u in draws) / len(draws)
    assert abs(first - 0.75) < 0.03
    with pytest.raises(ConfigError, match="2 weights for 1"):
        make_stream(urls[0], weights=[1, 2])
    with pytest.raises(ConfigError, match="resampled=True"):
        make_stream(urls, weights=[1, 1], resampled=False)


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> str:
    """4 shards: 28 good samples, 1 corrupt image, 1 missing image, 1 empty caption, 1 bad json,
    1 truncated tar (its last sample cut), plus an unreadable file listed as a shard."""
    d = str(tmp_path_factory.mktemp("bad"))
    good = scene_samples(0, 30)
    corrupt = ("bad-corrupt", {"png": b"\x89PNG garbage", "txt": b"a red circle"})
    missing = ("bad-missing", {"txt": b"a caption without an image"})
    empty = ("bad-empty", {"png": good[0][1]["png"], "txt": b""})
    badjson = ("bad-json", {"png": good[0][1]["png"], "json": b"{oops"})
    write_tar(f"{d}/b-000.tar", good[:8] + [corrupt])
    write_tar(f"{d}/b-001.tar", good[8:16] + [missing, empty])
    write_tar(f"{d}/b-002.tar", good[16:22] + [badjson])
    path = write_tar(f"{d}/b-003.tar", good[22:30])
    with tarfile.open(path) as tar:
        last_png = [m for m in tar.getmembers() if m.name.endswith(".png")][-1]
    with open(path, "r+b") as f:  # cut inside the last sample's image: that sample is lost
        f.truncate(last_png.offset_data + last_png.size // 2)
    with open(f"{d}/b-004.tar", "wb") as f:
        f.write(b"this is not a tar file at all" * 20)
    return d


def _one_pass(stream):
    st, seen = _fresh_state(), []
    for sample in stream.spec.samples(0, st):
        if st["epoch"] > 0:
            break
        seen.append(sample["key"])
    return seen, st["pass_end"]  # the counters when the pass ended


def test_bad_data_is_skipped_and_counted(bad_dir) -> None:
    stream = make_stream(f"{bad_dir}/b-{{000..004}}.tar", resampled=False, max_bad_fraction=0.5)
    seen, stats = _one_pass(stream)
    assert sorted(seen) == sorted(f"train-{i:08d}" for i in range(29))  # the 30th was truncated
    assert {k: stats[k] for k in ("samples", "corrupt_image", "missing_image", "empty_caption",
                                  "bad_json", "unreadable_shard", "truncated_shard")} == {
        "samples": 29, "corrupt_image": 1, "missing_image": 1, "empty_caption": 1, "bad_json": 1,
        "unreadable_shard": 1, "truncated_shard": 1}


def test_bad_fraction_metrics_and_abort(bad_dir) -> None:
    urls = f"{bad_dir}/b-{{000..004}}.tar"
    stream = make_stream(urls, resampled=False, max_bad_fraction=0.5, min_samples_for_abort=1)
    take(stream, 7)  # 28 samples: the whole pass minus one
    m = stream.metrics()
    assert m["data/samples"] == 28 and m["data/bad_samples"] == 4
    assert m["data/bad_fraction"] == pytest.approx(4 / 32)
    strict = make_stream(urls, resampled=False, max_bad_fraction=0.01, min_samples_for_abort=1,
                         num_workers=1)
    with pytest.raises(DataError, match=r"samples were bad .*max_bad_fraction 1.0%"):
        take(strict, 8)


def test_no_readable_shard_is_one_clear_error(tmp_path) -> None:
    with open(tmp_path / "junk.tar", "wb") as f:
        f.write(b"junk" * 100)
    stream = make_stream(str(tmp_path / "junk.tar"), max_failed_shards=5, num_workers=1)
    with pytest.raises(DataError) as e:
        take(stream, 1)
    assert "5 shards in a row could not be read" in str(e.value) and "\n" not in str(e.value)


def test_state_from_another_layout_restarts_with_a_warning(shard_dir, caplog) -> None:
    urls = f"{shard_dir}/s-{{000..005}}.tar"
    a = make_stream(urls, num_workers=0)
    take(a, 2)
    b = make_stream(urls, num_workers=2)
    b.load_state_dict(a.state_dict())
    assert "not an exact continuation" in caplog.text
    assert b.position == 2 and len(take(b, 1)[0]["key"]) == 4


def test_missing_shards_are_one_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match=r"none of the 3 shards exists: .*nope-\{0\.\.2\}\.tar"):
        make_stream(str(tmp_path / "nope-{0..2}.tar"))


def test_a_stream_of_only_bad_samples_stops(shard_dir) -> None:
    """No batch ever forms, so the check must happen inside the stream (was an endless loop)."""
    stream = make_stream(f"{shard_dir}/s-{{000..005}}.tar", num_workers=1,
                         text_transform=TextCrop(pools=("no_such_field",)),
                         max_bad_fraction=0.5, min_samples_for_abort=20)
    with pytest.raises(DataError, match=r"stream 0: 20 of 20 samples were bad .*empty_caption=20"):
        take(stream, 1)


def test_iopath_uris_are_read_through_the_path_manager(shard_dir) -> None:
    """A URI scheme registered with the project's PathManager (as a cluster's storage would be)."""
    from iopath.common.file_io import PathHandler

    from cosmos.utils.file_io import PathManager

    class TestStore(PathHandler):
        PREFIX = "teststore://"

        def _get_supported_prefixes(self):
            return [self.PREFIX]

        def _get_local_path(self, path, **kwargs):
            return os.path.join(shard_dir, path[len(self.PREFIX):])

        def _open(self, path, mode="r", **kwargs):
            return open(self._get_local_path(path), mode)

    if TestStore.PREFIX not in PathManager._path_handlers:
        PathManager.register_handler(TestStore())
    # a URI is a stream (read front to back); with the same in-shard shuffle buffer the local
    # files give the same samples
    via_uri = take(make_stream("teststore://s-{000..005}.tar", seed=4, shard_shuffle=5), 2)
    via_path = take(make_stream(f"{shard_dir}/s-{{000..005}}.tar", seed=4, shard_shuffle=5), 2)
    assert [b["key"] for b in via_uri] == [b["key"] for b in via_path]
    assert all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(via_uri, via_path))
