"""Tests for the webdataset shard writer (cosmos.data.shard_writer) and tools/make_shards.py."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from typing import Any, Dict, List

import numpy as np
import pytest
from PIL import Image

from cosmos.data.shard_writer import (
    existing_shards, folder_samples, synthetic_samples, write_shards,
)
from cosmos.data.synthetic import SyntheticScenes
from cosmos.data.text_crops import split_caption, to_sentences
from cosmos.utils.errors import CosmosError, DataError

from tests.helpers import REPO
TOOL = os.path.join(REPO, "tools", "make_shards.py")
N, PER_SHARD, SIZE = 25, 10, 32


@pytest.fixture(scope="module")
def scenes() -> SyntheticScenes:
    return SyntheticScenes(num_samples=N, image_size=SIZE, split="train", seed=3)


@pytest.fixture(scope="module")
def items(scenes) -> List[Dict[str, Any]]:
    return [scenes[i] for i in range(len(scenes))]


def _write(scenes, out: str, **kw) -> Dict[str, Any]:
    presplit = kw.pop("presplit", False)
    image_format = kw.pop("image_format", "png")
    return write_shards(synthetic_samples(scenes, presplit=presplit, image_format=image_format),
                        out, "shard", PER_SHARD, source=repr(scenes), presplit=presplit, **kw)


@pytest.fixture(scope="module")
def shard_dir(scenes, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("plain") / "out")
    _write(scenes, out)
    return out


def _read_tar(path: str) -> List[Dict[str, Any]]:
    """Group the members of a tar by key, keeping member order and the tar headers."""
    samples: List[Dict[str, Any]] = []
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            key, ext = info.name.split(".", 1)
            if not samples or samples[-1]["__key__"] != key:
                samples.append({"__key__": key, "__members__": []})
            samples[-1][ext] = tar.extractfile(info).read()
            samples[-1]["__members__"].append((ext, info.mtime, info.uid, info.gid, info.mode))
    return samples


def _shards(out: str) -> List[str]:
    return [os.path.join(out, n) for n in json.load(open(os.path.join(out, "shard-index.json")))
            ["shards"]]


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_index_and_layout(shard_dir, scenes):
    index = json.load(open(os.path.join(shard_dir, "shard-index.json")))
    assert index == {"shards": ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"],
                     "num_samples": 25, "samples_per_shard": 10, "source": repr(scenes),
                     "presplit": False, "sample_counts": [10, 10, 5]}
    assert sorted(os.listdir(shard_dir)) == index["shards"] + ["shard-index.json"]  # no temp left
    counts = []
    for path in _shards(shard_dir):
        samples = _read_tar(path)
        counts.append(len(samples))
        for s in samples:
            assert [m[0] for m in s["__members__"]] == ["png", "txt", "json"]
            assert all(m[1:] == (0, 0, 0, 0o644) for m in s["__members__"])
    assert counts == [10, 10, 5]


def test_synthetic_roundtrip_tarfile(shard_dir, items):
    samples = [s for path in _shards(shard_dir) for s in _read_tar(path)]
    assert [s["__key__"] for s in samples] == [it["key"] for it in items]
    for s, it in zip(samples, items):
        assert s["txt"].decode("utf-8") == it["captions"]["raw"]
        meta = json.loads(s["json"].decode("utf-8"))
        assert meta["raw_caption"] == it["captions"]["raw"]
        assert meta["label"] == it["label"]
        assert meta["long"] == " ".join(it["captions"]["long"])
        assert meta["short"] == " ".join(it["captions"]["short"])
        assert meta["objects"] == json.loads(json.dumps(it["objects"]))
        decoded = np.asarray(Image.open(io.BytesIO(s["png"])).convert("RGB"))
        assert np.array_equal(decoded, np.asarray(it["image"]))


def test_synthetic_roundtrip_webdataset(shard_dir, items):
    wds = pytest.importorskip("webdataset")
    got = list(wds.WebDataset(_shards(shard_dir), shardshuffle=False))
    assert [s["__key__"] for s in got] == [it["key"] for it in items]
    for s, it in zip(got, items):
        assert set(s) >= {"png", "txt", "json"}
        assert s["txt"].decode() == it["captions"]["raw"]
        assert json.loads(s["json"])["label"] == it["label"]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(s["png"])).convert("RGB")),
                              np.asarray(it["image"]))


def test_byte_identical_rewrite_and_overwrite(shard_dir, scenes, tmp_path):
    out = str(tmp_path / "again")
    _write(scenes, out)
    for a, b in zip(_shards(shard_dir), _shards(out)):
        assert open(a, "rb").read() == open(b, "rb").read()
    before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
    with pytest.raises(DataError, match="already contains .*--overwrite"):
        _write(scenes, out)
    assert {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)} == before
    # overwrite with fewer samples: stale shard 2 disappears, index updated
    small = SyntheticScenes(num_samples=12, image_size=SIZE, split="train", seed=3)
    index = _write(small, out, overwrite=True)
    assert index["sample_counts"] == [10, 2]
    assert sorted(os.listdir(out)) == ["shard-000000.tar", "shard-000001.tar", "shard-index.json"]
    assert open(os.path.join(out, "shard-000000.tar"), "rb").read() == \
        open(_shards(shard_dir)[0], "rb").read()


def test_presplit_same_sentences(shard_dir, scenes, items, tmp_path):
    out = str(tmp_path / "presplit")
    index = _write(scenes, out, presplit=True)
    assert index["presplit"] is True
    plain = [json.loads(s["json"]) for p in _shards(shard_dir) for s in _read_tar(p)]
    split = [json.loads(s["json"]) for p in _shards(out) for s in _read_tar(p)]
    for a, b, it in zip(plain, split, items):
        assert isinstance(a["long"], str) and isinstance(b["long"], list)
        assert b["long"] == [s for x in it["captions"]["long"] for s in split_caption(x)]
        assert len(b["long"]) == len(it["captions"]["long"])
        for field in ("long", "short"):
            assert to_sentences(a[field]) == to_sentences(b[field]) == \
                to_sentences(it["captions"][field])
        assert a["raw_caption"] == b["raw_caption"] == it["captions"]["raw"]


def test_jpg_variant_close_pixels(scenes, items, tmp_path):
    out = str(tmp_path / "jpg")
    _write(scenes, out, image_format="jpg")
    samples = [s for p in _shards(out) for s in _read_tar(p)]
    assert all("jpg" in s and "png" not in s for s in samples)
    for s, it in zip(samples, items):
        decoded = np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB")).astype(int)
        diff = np.abs(decoded - np.asarray(it["image"]).astype(int))
        assert diff.mean() < 3.0 and diff.max() < 64


def test_writer_rejects_bad_values(scenes, tmp_path):
    out = str(tmp_path / "bad")
    with pytest.raises(DataError, match="samples_per_shard"):
        write_shards(iter([]), out, "shard", 0)
    with pytest.raises(DataError, match="without dots"):
        write_shards([{"__key__": "a.b", "txt": "x"}], out)
    assert existing_shards(out, "shard") == [] and not any(
        n.endswith(".tar") for n in os.listdir(out))  # the aborted shard left no file
    with pytest.raises(DataError, match="image format"):
        synthetic_samples(scenes, image_format="gif")


# ----------------------------------------------------------------------------- folder


def _png(path, color) -> None:
    Image.new("RGB", (6, 5), color).save(path)


@pytest.fixture
def folder(tmp_path) -> str:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    _png(images / "a.png", (255, 0, 0))
    Image.new("RGB", (6, 5), (0, 0, 255)).save(images / "sub" / "b.jpg", quality=90)
    _png(images / "c.png", (0, 255, 0))
    _png(images / "d.png", (9, 9, 9))
    return str(images)


def _table(path, rows, sep=",") -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=sep).writerows(rows)
    return str(path)


ROWS = [["filepath", "title", "longIB_captions"],
        ["a.png", "a red square", '["First. Second.", "Third"]'],
        ["sub/b.jpg", "a blue square", "One sentence. Two"],
        ["missing.png", "nothing here", "x"],
        ["c.png", "  ", "y"],
        ["d.png", "a dark square", ""]]


def _folder_write(folder, out, **kw):
    skipped: Counter = Counter()
    samples = folder_samples(folder, skipped=skipped, **kw)
    return write_shards(samples, out, "shard", 2, presplit=kw.get("presplit", False)), skipped


def test_folder_csv_counts_and_content(folder, tmp_path):
    table = _table(tmp_path / "caps.csv", ROWS)
    out = str(tmp_path / "out")
    index, skipped = _folder_write(folder, out, csv=table,
                                   extra_caption_columns="longIB_captions")
    assert index["num_samples"] == 3 and index["sample_counts"] == [2, 1]
    assert skipped == Counter(missing_image=1, empty_caption=1)
    samples = [s for p in _shards(out) for s in _read_tar(p)]
    assert [s["__key__"] for s in samples] == ["000000000", "000000001", "000000004"]
    assert samples[0]["png"] == open(os.path.join(folder, "a.png"), "rb").read()  # original bytes
    assert samples[1]["jpg"] == open(os.path.join(folder, "sub", "b.jpg"), "rb").read()
    metas = [json.loads(s["json"]) for s in samples]
    assert metas[0] == {"raw_caption": "a red square",
                        "longIB_captions": ["First. Second.", "Third"], "source_path": "a.png"}
    assert metas[1]["longIB_captions"] == "One sentence. Two"
    assert [s["txt"].decode() for s in samples] == \
        ["a red square", "a blue square", "a dark square"]

    out2 = str(tmp_path / "out2")
    _folder_write(folder, out2, csv=table, extra_caption_columns=["longIB_captions"], presplit=True)
    metas = [json.loads(s["json"]) for p in _shards(out2) for s in _read_tar(p)]
    assert metas[0]["raw_caption"] == "a red square"
    assert metas[0]["longIB_captions"] == ["First", "Second", "Third"]
    assert metas[1]["longIB_captions"] == ["One sentence", "Two"]
    assert metas[2]["longIB_captions"] == []


def test_folder_tsv_and_json_sources(folder, tmp_path):
    tsv = _table(tmp_path / "caps.tsv", [["path", "caption"], ["a.png", "red, with a comma"],
                                         ["sub/b.jpg", "blue"]], sep="\t")
    index, _ = _folder_write(folder, str(tmp_path / "tsv"), csv=tsv, image_column="path",
                             caption_column="caption")
    assert index["num_samples"] == 2
    assert _read_tar(_shards(str(tmp_path / "tsv"))[0])[0]["txt"] == b"red, with a comma"

    mapping = tmp_path / "caps.json"
    mapping.write_text(json.dumps({"a.png": "red", "sub/b.jpg": {"title": "blue", "long": ["x"]},
                                   "nope.png": "gone"}))
    index, skipped = _folder_write(folder, str(tmp_path / "js"), json_file=str(mapping))
    assert index["num_samples"] == 2 and skipped == Counter(missing_image=1)
    got = [json.loads(s["json"]) for s in _read_tar(_shards(str(tmp_path / "js"))[0])]
    assert got == [{"raw_caption": "red", "source_path": "a.png"},
                   {"raw_caption": "blue", "source_path": "sub/b.jpg"}]
    # the string-valued entry "a.png" has no field 'long'
    with pytest.raises(DataError, match=r"entry 1 \(a.png\) has no field 'long'"):
        folder_samples(folder, json_file=str(mapping), extra_caption_columns="long")

    lines = tmp_path / "caps.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in [
        {"filepath": "c.png", "title": "green", "longIB_captions": ["A. B", "C"]},
        {"filepath": "d.png", "title": ""}, {"filepath": "a.png", "title": "red"}]) + "\n")
    with pytest.raises(DataError, match="line 2 has no field 'longIB_captions'"):
        folder_samples(folder, json_file=str(lines), extra_caption_columns="longIB_captions")
    index, skipped = _folder_write(folder, str(tmp_path / "jl"), json_file=str(lines))
    assert index["num_samples"] == 2 and skipped == Counter(empty_caption=1)
    assert [s["__key__"] for s in _read_tar(_shards(str(tmp_path / "jl"))[0])] == \
        ["000000000", "000000002"]
    lines.write_text(lines.read_text().splitlines()[0] + "\n")
    _folder_write(folder, str(tmp_path / "jl2"), json_file=str(lines),
                  extra_caption_columns="longIB_captions", presplit=True)
    meta = json.loads(_read_tar(_shards(str(tmp_path / "jl2"))[0])[0]["json"])
    assert meta == {"raw_caption": "green", "longIB_captions": ["A", "B", "C"],
                    "source_path": "c.png"}


def test_folder_errors(folder, tmp_path):
    table = _table(tmp_path / "caps.csv", ROWS)
    with pytest.raises(DataError, match=r"no column 'caption'; available columns: filepath, title"):
        folder_samples(folder, csv=table, caption_column="caption")
    with pytest.raises(DataError, match="no column 'shortSV_captions'"):
        folder_samples(folder, csv=table, extra_caption_columns="longIB_captions,shortSV_captions")
    with pytest.raises(DataError, match="not found"):
        folder_samples(folder, csv=str(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="image directory not found"):
        folder_samples(str(tmp_path / "nowhere"), csv=table)
    assert not os.path.exists(tmp_path / "out")


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_shards_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cli(folder, tmp_path, capsys):
    table = _table(tmp_path / "caps.csv", ROWS)
    out = tmp_path / "cli"
    tool = _load_tool()  # in process: a second interpreter start would double the test time
    assert tool.main(["folder", "--images", folder, "--csv", table, "--out", str(out),
                      "--samples-per-shard", "2", "--extra-caption-columns", "longIB_captions",
                      "--presplit"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("shard-000000.tar: 2 samples,") and "samples/s" in lines[0]
    assert lines[-1] == (f"written 3 samples in 2 shards to {out}; skipped 2 "
                         "(empty_caption 1, missing_image 1)")
    assert json.load(open(out / "shard-index.json"))["presplit"] is True

    syn = tmp_path / "syn"
    assert tool.main(["synthetic", "--num-samples", "3", "--image-size", "16", "--image-format",
                      "jpg", "--seed", "1", "--out", str(syn), "--prefix", "demo"]) == 0
    index = json.load(open(syn / "demo-index.json"))
    assert index["shards"] == ["demo-000000.tar"] and index["num_samples"] == 3
    assert [s["__key__"] for s in _read_tar(str(syn / "demo-000000.tar"))] == \
        ["train-00000000", "train-00000001", "train-00000002"]
    with pytest.raises(CosmosError, match="image_size must be >= 16"):
        tool.main(["synthetic", "--image-size", "4", "--out", str(tmp_path / "small")])

    missing = subprocess.run([sys.executable, "tools/make_shards.py", "folder", "--images", folder,
                              "--csv", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "x")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: caption table not found: {tmp_path / 'absent.csv'}"]
    assert not os.path.exists(tmp_path / "x")
