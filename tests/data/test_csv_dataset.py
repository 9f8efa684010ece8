"""Tests for the CSV/TSV image-caption dataset (cosmos.data.csv_dataset.CsvPairs)."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from cosmos.data.csv_dataset import CsvPairs
from cosmos.registry import DATASETS
from cosmos.utils.errors import BadSampleError, DataError


def _table(path, rows, sep=",") -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=sep).writerows(rows)
    return str(path)


@pytest.fixture
def tree(tmp_path):
    """images/{red.png, blue.jpg, garbage.png} plus an absolute-path image elsewhere."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (7, 5), (200, 10, 10)).save(images / "red.png")
    Image.new("L", (4, 4), 77).save(images / "gray.png")  # not RGB on disk
    Image.new("RGB", (6, 6), (10, 10, 200)).save(images / "blue.jpg", quality=95)
    (images / "garbage.png").write_bytes(b"\x89PNG this is not an image" * 4)
    other = tmp_path / "elsewhere"
    other.mkdir()
    Image.new("RGB", (3, 3), (0, 255, 0)).save(other / "green.png")
    return tmp_path, str(other / "green.png")


def test_items_relative_and_absolute_paths(tree):
    root, green = tree
    table = _table(root / "data" / "pairs.csv", [
        ["filepath", "title", "longIB_captions", "shortIB_captions"],
        ["images/red.png", "a red box", '["A red box. On gray.", "Small"]', "Red."],
        ["images/gray.png", "gray, with a comma", "", "[not json"],
        [green, "a green dot", "[]", "x"],
    ])
    ds = CsvPairs(table, extra_caption_columns="longIB_captions,shortIB_captions")
    assert len(ds) == 3
    item = ds[0]
    assert item["key"] == "000000000"
    assert item["image"].mode == "RGB" and item["image"].size == (7, 5)
    assert np.asarray(item["image"])[0, 0].tolist() == [200, 10, 10]
    assert item["captions"] == {"raw_caption": "a red box",
                                "longIB_captions": ["A red box. On gray.", "Small"],
                                "shortIB_captions": "Red."}
    gray = ds[1]
    assert gray["image"].mode == "RGB" and np.asarray(gray["image"])[0, 0].tolist() == [77] * 3
    assert gray["captions"] == {"raw_caption": "gray, with a comma", "longIB_captions": "",
                                "shortIB_captions": "[not json"}
    last = ds[-1]
    assert last["key"] == "000000002" and last["captions"]["longIB_captions"] == []
    assert np.asarray(last["image"])[1, 1].tolist() == [0, 255, 0]
    with pytest.raises(IndexError):
        ds[3]


def test_image_root_and_tsv(tree):
    root, _ = tree
    table = _table(root / "pairs.tsv", [["path", "caption"], ["blue.jpg", "blue, tab separated"],
                                        [], ["red.png", "red"]], sep="\t")
    ds = CsvPairs(table, image_root=str(root / "data" / "images"), image_column="path",
                  caption_column="caption")
    assert len(ds) == 2  # the blank line is no row
    assert ds[0]["captions"] == {"raw_caption": "blue, tab separated"}
    assert np.abs(np.asarray(ds[0]["image"]).astype(int) - [10, 10, 200]).max() < 8
    assert ds[1]["key"] == "000000001"
    # the same file read as comma-separated has one column only
    with pytest.raises(DataError, match="no column 'path'"):
        CsvPairs(table, sep=",", image_column="path", caption_column="caption")
    assert len(CsvPairs(table, sep="\\t", image_column="path", caption_column="caption")) == 2


def test_bad_samples(tree):
    root, _ = tree
    table = _table(root / "data" / "pairs.csv", [
        ["filepath", "title"], ["images/garbage.png", "garbage"], ["images/absent.png", "absent"],
        ["images/red.png", "   "], ["images", "a directory"]])
    ds = CsvPairs(table)
    expected = ["corrupt_image", "missing_image", "empty_caption", "missing_image"]
    for i, reason in enumerate(expected):
        with pytest.raises(BadSampleError) as info:
            ds[i]
        assert info.value.reason == reason
    with pytest.raises(BadSampleError, match="absent.png"):
        ds[1]


def test_table_errors(tree):
    root, _ = tree
    table = _table(root / "data" / "pairs.csv", [["filepath", "title"], ["images/red.png", "r"]])
    with pytest.raises(DataError, match=r"pairs.csv: no column 'caption'; available columns: "
                                        r"filepath, title$"):
        CsvPairs(table, caption_column="caption")
    with pytest.raises(DataError, match="no column 'longIB_captions'"):
        CsvPairs(table, extra_caption_columns=["longIB_captions"])
    with pytest.raises(DataError, match="not found: .*absent.csv"):
        CsvPairs(str(root / "absent.csv"))
    ragged = root / "ragged.csv"
    ragged.write_text("filepath,title\na.png,one\nb.png,two,three\n")
    with pytest.raises(DataError, match="line 3 has 3 fields, the header has 2"):
        CsvPairs(str(ragged))
    with pytest.raises(DataError, match="raw_caption"):
        CsvPairs(table, extra_caption_columns="raw_caption")


def test_registry_lookup(tree):
    root, _ = tree
    cls = DATASETS.get("csv_pairs")
    assert cls is CsvPairs
    table = _table(root / "data" / "pairs.csv", [["filepath", "title"], ["images/red.png", "r"]])
    ds = cls(path=table)
    assert ds[0]["captions"]["raw_caption"] == "r"
    assert os.path.samefile(ds.image_root, root / "data")
