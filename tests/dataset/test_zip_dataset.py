"""Tests for explorer.dataset.zip_dataset: a YOLO, VOC or COCO dataset uploaded as a zip reads as from its folder;
splits, names inside the zip, and what is refused (several datasets, none, names leaving the archive, a data.yaml
pointing outside, too large)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from explorer.dataset.convert import write_voc, write_yolo
from explorer.dataset.formats import load_dataset
from explorer.dataset.image_stores import SubfolderImages, ZipImages
from explorer.dataset.zip_dataset import load_zip_dataset, zip_members
from tests.dataset.format_cases import synthetic_images, text, zip_folder


def _zip(entries: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_yolo_zip_reads_as_its_folder_and_serves_its_images(tmp_path) -> None:
    ds = synthetic_images(tmp_path / "src", 3, seed=1)
    for split in ("train", "val"):
        write_yolo(ds, tmp_path / split, split=split)
    folder = tmp_path / "yolo"
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (tmp_path / split / sub / split).rename(folder / sub / split)
    names = json.dumps(dict(enumerate(ds.category_names)))
    text(folder / "data.yaml", f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    data = zip_folder(folder, under="my-set")
    zd = load_zip_dataset(data, name="up.zip")
    expected = load_dataset(folder / "data.yaml", split="val")
    assert (zd.format, zd.split, zd.splits, zd.prefix, zd.where) == (
        "yolo",
        "val",
        ("train", "val"),
        "my-set",
        "my-set/data.yaml",
    )
    assert zd.dataset.name == "up.zip/my-set/data.yaml (val)" and zd.dataset.image_root == ""
    assert (
        zd.dataset.file_names
        == expected.file_names
        == ["images/val/000001.jpg", "images/val/000002.jpg", "images/val/000003.jpg"]
    )
    np.testing.assert_array_equal(zd.dataset.boxes_xyxy, expected.boxes_xyxy)
    np.testing.assert_array_equal(zd.dataset.boxes_xyxy, ds.boxes_xyxy[~ds.iscrowd])
    assert load_zip_dataset(data, split="train").split == "train"
    store = SubfolderImages(ZipImages(data), zd.prefix)
    name = zd.dataset.file_names[0]
    assert store.read(name) == (folder / name).read_bytes()


def test_voc_zip_keeps_difficult_objects_as_ignore_regions(tmp_path) -> None:
    ds = synthetic_images(tmp_path / "src", 2, seed=2)
    ds.iscrowd = ds.iscrowd.copy()
    ds.iscrowd[0] = True  # written as <difficult>1</difficult>
    write_voc(ds, tmp_path / "VOC", split="val")
    zd = load_zip_dataset(zip_folder(tmp_path / "VOC"), name="voc.zip")
    assert (zd.format, zd.split, zd.splits, zd.prefix, zd.where) == ("voc", None, ("val",), "JPEGImages", ".")
    assert zd.dataset.iscrowd.tolist() == ds.iscrowd.tolist()
    np.testing.assert_array_equal(zd.dataset.boxes_xyxy, ds.boxes_xyxy)
    assert zd.dataset.file_names == ds.file_names and zd.dataset.name == "voc.zip"
    assert load_zip_dataset(zip_folder(tmp_path / "VOC"), split="val").dataset.name == "the zip (val)"


def test_coco_zip_with_its_images(tmp_path) -> None:
    box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3], "iscrowd": 0, "area": 9}
    coco = {"images": [{"id": 1, "width": 8, "height": 6, "file_name": "a.jpg"}], "annotations": [box]}
    zd = load_zip_dataset(_zip({"d/annotations/instances_val.json": json.dumps(coco), "d/val/a.jpg": b"jpeg"}))
    assert (zd.format, zd.prefix, zd.dataset.num_images) == ("coco", "d/val", 1)
    assert zd.dataset.boxes_xyxy.tolist() == [[1.0, 1.0, 4.0, 4.0]]


def test_several_datasets_or_none_are_named(tmp_path) -> None:
    both = _zip({"a.json": '{"images": []}', "data.yaml": "train: images\nnames: [x]\n", "images/a.jpg": b""})
    with pytest.raises(ValueError, match=r"x.zip holds several datasets: a.json \(coco\), data.yaml \(yolo\)"):
        load_zip_dataset(both, name="x.zip")
    assert load_zip_dataset(both, format="coco").format == "coco"  # the format override picks one
    with pytest.raises(ValueError, match=r"no dataset in x\.zip"):
        load_zip_dataset(_zip({"notes/readme.txt": "hi", "other/b.jpg": b""}), name="x.zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        load_zip_dataset(b"PK not really")


def test_member_names_and_yaml_paths_that_leave_the_upload_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"'../evil.json' leaves the archive"):
        zip_members(_zip({"../evil.json": "{}"}))
    outside = tmp_path / "outside"
    (outside / "images").mkdir(parents=True)
    data = _zip({"data.yaml": f"path: {outside}\ntrain: images\nnames: [x]\n", "images/a.jpg": b""})
    with pytest.raises(ValueError, match=f"data.yaml: 'path' {outside} is outside the zip"):
        load_zip_dataset(data, name="the zip")
    listed = _zip({"data.yaml": "train: list.txt\nnames: [x]\n", "list.txt": "../../../etc/a.jpg\n"})
    with pytest.raises(ValueError, match=r"etc/a\.jpg is outside the zip"):
        load_zip_dataset(listed, name="the zip")


def test_the_unpacked_size_is_bounded() -> None:
    data = _zip({"a.json": json.dumps({"images": [], "pad": "x" * 5000})})
    with pytest.raises(ValueError, match="unpack to 5,"):
        load_zip_dataset(data, max_bytes=1000)
