"""Tests for explorer.dataset.convert: YOLO and VOC copies of the sample dataset and of coco-mini scan to the same
per-image counts as the COCO original, boxes read back bit for bit, crowd boxes carried (VOC) or left out (YOLO)
and said so, images referenced by links, and bad outputs refused."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from explorer import synthetic
from explorer.dataset.coco import CocoDataset, load_coco
from explorer.dataset.convert import convert, write_coco
from explorer.dataset.formats import load_dataset
from explorer.dataset.scan import scan_dataset
from tests.dataset.format_cases import image, text, voc_object, voc_xml

COUNTS = ["boxes", "crowd_boxes", "positives", "ignored", "hard_negatives", "easy_negatives", "anchors"]
COUNTS += ["boxes_no_positive", "boxes_low_quality_only"]


def scan_by_name(ds: CocoDataset) -> pd.DataFrame:
    images = scan_dataset(ds, device="cpu").images
    images.index = [f.rsplit("/", 1)[-1] for f in images["file_name"]]
    return images[["width", "height", *COUNTS]]


def boxes_by_name(ds: CocoDataset) -> dict[str, np.ndarray]:
    return {f.rsplit("/", 1)[-1]: ds.boxes_xyxy[ds.annotations_of(k)] for k, f in enumerate(ds.file_names)}


def assert_copies_scan_like(original: CocoDataset, tmp_path) -> None:
    """A YOLO and a VOC copy of ``original`` (written by the converter, images linked) scan like it, image by
    image; VOC carries crowd boxes as difficult objects, YOLO has no crowd flag and leaves them out, which cannot
    change a count but crowd_boxes (crowd boxes are never matched)."""
    want = scan_by_name(original)
    yolo_report = convert(original, "yolo", tmp_path / "yolo")
    voc_report = convert(original, "voc", tmp_path / "voc")
    assert yolo_report.inexact == voc_report.inexact == 0 and yolo_report.images_missing == 0
    assert yolo_report.crowd_left_out == int(original.iscrowd.sum())
    assert os.path.islink(tmp_path / "yolo" / "images" / "train" / want.index[0])
    yolo, voc = load_dataset(tmp_path / "yolo"), load_dataset(tmp_path / "voc")
    assert voc.problems["kind"].isin(["crowd"]).all() and yolo.problems.empty
    pd.testing.assert_frame_equal(scan_by_name(voc).loc[want.index], want)
    got = scan_by_name(yolo).loc[want.index]
    assert (got["crowd_boxes"] == 0).all()
    pd.testing.assert_frame_equal(got.drop(columns="crowd_boxes"), want.drop(columns="crowd_boxes"))
    no_crowd = want["crowd_boxes"] == 0
    pd.testing.assert_frame_equal(got[no_crowd], want[no_crowd])
    for copy, keep_crowd in ((voc, True), (yolo, False)):  # the boxes themselves, bit for bit
        theirs = boxes_by_name(copy)
        for k, name in enumerate(original.file_names):
            rows = original.annotations_of(k)
            mine = original.boxes_xyxy[rows][keep_crowd | ~original.iscrowd[rows]]
            np.testing.assert_array_equal(theirs[name.rsplit("/", 1)[-1]], mine)
    back = convert(voc, "coco", tmp_path / "back.json")
    assert back.inexact == 0
    np.testing.assert_array_equal(load_coco(tmp_path / "back.json").boxes_xyxy, voc.boxes_xyxy)


def test_sample_dataset_copies_scan_like_the_original(tmp_path) -> None:
    original = load_dataset(synthetic.sample_dataset())
    assert original.image_root.endswith("images")
    assert_copies_scan_like(original, tmp_path)


def test_coco_mini_copies_scan_like_the_original(coco_mini, tmp_path) -> None:
    original = load_dataset(coco_mini / "annotations" / "instances_train2017.json")
    assert original.iscrowd.sum() > 0  # the crowd cases are exercised
    assert_copies_scan_like(original, tmp_path)


def small_dataset(tmp_path, *, with_images: bool = True) -> CocoDataset:
    coco = {
        "images": [{"id": 5, "width": 64, "height": 48, "file_name": "x/a.jpg"}, {"id": 9, "width": 64, "height": 48}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1.5, 2.25, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 30, 30], "iscrowd": 1},
        ],
    }
    coco["images"][1]["file_name"] = "b.jpg"
    if with_images:
        image(tmp_path / "src" / "x" / "a.jpg", 64, 48)
        image(tmp_path / "src" / "b.jpg", 64, 48)
    ds = load_coco(coco)
    ds.image_root = str(tmp_path / "src")
    return ds


def test_yolo_copy_class_ids_names_and_crowd(tmp_path) -> None:
    ds = small_dataset(tmp_path)
    report = convert(ds, "yolo", tmp_path / "out", split="val")
    assert (report.images, report.boxes, report.crowd_left_out) == (2, 1, 1)
    assert "1 crowd boxes left out (YOLO has no crowd flag)" in report.summary()
    lines = (tmp_path / "out" / "labels" / "val" / "a.txt").read_text().splitlines()
    assert lines == ["1 0.1015625 0.2552083333333333 0.15625 0.4166666666666667"]  # dog: the 2nd category
    assert (tmp_path / "out" / "labels" / "val" / "b.txt").read_text() == ""
    back = load_dataset(tmp_path / "out")
    assert back.category_ids.tolist() == [0, 1] and back.category_names == ["cat", "dog"]
    np.testing.assert_array_equal(back.boxes_xyxy, ds.boxes_xyxy[~ds.iscrowd])


def test_voc_copy_keeps_crowd_as_difficult_and_works_without_images(tmp_path) -> None:
    ds = small_dataset(tmp_path, with_images=False)
    report = convert(ds, "voc", tmp_path / "out")
    assert (report.images, report.boxes, report.images_missing) == (2, 2, 2)
    xml = (tmp_path / "out" / "Annotations" / "a.xml").read_text()
    assert "<xmin>2.5</xmin>" in xml and "<xmax>11.5</xmax>" in xml and "<difficult>1</difficult>" in xml
    assert (tmp_path / "out" / "ImageSets" / "Main" / "train.txt").read_text() == "a\nb\n"
    back = load_dataset(tmp_path / "out", split="train")
    assert back.file_names == ["a.jpg", "b.jpg"] and back.iscrowd.tolist() == [False, True]
    np.testing.assert_array_equal(back.boxes_xyxy, ds.boxes_xyxy)


def test_a_yolo_copy_leaves_out_images_it_cannot_find(tmp_path) -> None:
    ds = small_dataset(tmp_path)
    (tmp_path / "src" / "b.jpg").unlink()
    report = convert(ds, "yolo", tmp_path / "out")
    assert (report.images, report.images_missing) == (1, 1)
    assert load_dataset(tmp_path / "out").file_names == ["images/train/a.jpg"]


def test_coco_copy_counts_boxes_that_cannot_read_back(tmp_path) -> None:
    x1, x2 = float(np.float32(1209.5043)), float(np.float32(3417.0632))  # x1 + w cannot give x2 in float32
    objects = voc_object("a", (x1 + 1, 1, x2, 10)) + voc_object("a", (11, 1, 40, 10))
    text(tmp_path / "voc" / "Annotations" / "a.xml", voc_xml("a.jpg", (4000, 100), objects))
    ds = load_dataset(tmp_path / "voc")
    assert ds.boxes_xyxy[0, 0] == np.float32(x1) and ds.boxes_xyxy[0, 2] == np.float32(x2)
    report = write_coco(ds, tmp_path / "a.json.gz")
    assert report.inexact == 1 and "1 boxes read back 1 ulp off" in report.summary()
    back = load_dataset(tmp_path / "a.json.gz").boxes_xyxy
    assert (back != ds.boxes_xyxy).sum() == 1 and np.abs(back - ds.boxes_xyxy).max() <= 2.5e-4


def test_coco_copy_keeps_ids_and_crowd(tmp_path) -> None:
    ds = small_dataset(tmp_path)
    write_coco(ds, tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert [i["id"] for i in data["images"]] == [5, 9] and [c["id"] for c in data["categories"]] == [3, 7]
    assert [a["iscrowd"] for a in data["annotations"]] == [0, 1] and data["annotations"][0]["bbox"] == [
        1.5,
        2.25,
        10,
        20,
    ]


def test_bad_outputs_are_refused(tmp_path) -> None:
    ds = small_dataset(tmp_path)
    text(tmp_path / "full" / "x.txt", "")
    with pytest.raises(ValueError, match=r"output folder .*full is not empty"):
        convert(ds, "yolo", tmp_path / "full")
    with pytest.raises(ValueError, match=r"is a folder: COCO is written to a \.json file"):
        convert(ds, "coco", tmp_path / "full")
    with pytest.raises(ValueError, match=r"output folder .*nowhere does not exist"):
        convert(ds, "coco", tmp_path / "nowhere" / "a.json")
    with pytest.raises(ValueError, match="unknown target format 'kitti'"):
        convert(ds, "kitti", tmp_path / "k")
