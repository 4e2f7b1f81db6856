"""Tests for explorer.dataset.formats: the format of a file or folder, several datasets named, explicit overrides,
the split choosing among COCO files, gzip'd COCO, and the COCO images folder."""

from __future__ import annotations

import gzip
import json

import pytest

from explorer.dataset.formats import detect_format, guess_coco_images, load_dataset, locate
from tests.dataset.format_cases import text, voc_xml, yolo_pair

COCO = {"images": [{"id": 1, "width": 64, "height": 48, "file_name": "a.jpg"}], "annotations": [], "categories": []}


def test_files_by_suffix_or_first_bytes(tmp_path) -> None:
    assert detect_format(text(tmp_path / "a.json", json.dumps(COCO))) == "coco"
    assert detect_format(text(tmp_path / "data.yml", "train: x\n")) == "yolo"
    assert detect_format(text(tmp_path / "a.xml", voc_xml())) == "voc"
    assert detect_format(text(tmp_path / "noext", json.dumps(COCO))) == "coco"
    assert detect_format(text(tmp_path / "ann", "<annotation/>")) == "voc"
    with pytest.raises(ValueError, match=r"cannot tell the format of .*notes.txt"):
        detect_format(text(tmp_path / "notes.txt", "hello"))


def test_folders_of_each_format(tmp_path) -> None:
    coco = tmp_path / "coco"
    text(coco / "annotations" / "instances_val2017.json", json.dumps(COCO))
    assert locate(coco).path == coco / "annotations" / "instances_val2017.json"
    yolo = yolo_pair(tmp_path / "yolo", {"a": ""})
    assert locate(yolo).format == "yolo" and locate(yolo).path == yolo
    text(yolo / "data.yaml", "train: images\n")
    assert locate(yolo).path == yolo / "data.yaml"  # the yaml, not the pair it describes
    voc = tmp_path / "voc"
    text(voc / "Annotations" / "a.xml", voc_xml())
    assert detect_format(voc) == "voc"
    assert detect_format(tmp_path / "voc" / "Annotations" / "a.xml") == "voc"


def test_a_folder_with_several_datasets_names_them(tmp_path) -> None:
    text(tmp_path / "annotations" / "instances_train2017.json", json.dumps(COCO))
    text(tmp_path / "annotations" / "instances_val2017.json", json.dumps(COCO))
    text(tmp_path / "VOC2007" / "Annotations" / "a.xml", voc_xml())
    with pytest.raises(ValueError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    assert "holds several datasets" in message
    for name in ("annotations/instances_train2017.json (coco)", "annotations/instances_val2017.json (coco)"):
        assert name in message
    assert "VOC2007 (voc)" in message
    assert locate(tmp_path, format="voc").path == tmp_path / "VOC2007"
    assert locate(tmp_path, format="coco", split="val").path.name == "instances_val2017.json"


def test_nothing_there(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no dataset in .*: expected a COCO .json, a YOLO data.yaml"):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="dataset not found"):
        load_dataset(tmp_path / "missing")
    text(tmp_path / "a.json", json.dumps(COCO))
    with pytest.raises(ValueError, match="no voc dataset in"):
        load_dataset(tmp_path, format="voc")
    with pytest.raises(ValueError, match="unknown format 'kitti'"):
        load_dataset(tmp_path, format="kitti")


def test_explicit_format_overrides_the_suffix(tmp_path) -> None:
    path = text(tmp_path / "labels.data", json.dumps(COCO))
    assert load_dataset(path, format="coco").num_images == 1
    with pytest.raises(ValueError, match=r"labels.data has no split \(a data.yaml names its images under train"):
        load_dataset(path, format="yolo")  # JSON is YAML, but not a data.yaml
    with pytest.raises(ValueError, match=r"not a YOLO data\.yaml: the top level is a list"):
        load_dataset(text(tmp_path / "list.data", "[1, 2]"), format="yolo")


def test_gzipped_coco_and_its_images_folder(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    path = tmp_path / "annotations.json.gz"
    path.write_bytes(gzip.compress(json.dumps(COCO).encode()))
    ds = load_dataset(path)
    assert ds.num_images == 1 and ds.name == "annotations.json.gz"
    assert ds.image_root == str(tmp_path / "images")
    assert load_dataset(path, images=tmp_path).image_root == str(tmp_path)
    assert guess_coco_images(text(tmp_path / "x" / "annotations" / "instances_val2017.json", "{}")) is None
    (tmp_path / "x" / "val2017").mkdir()
    assert guess_coco_images(tmp_path / "x" / "annotations" / "instances_val2017.json") == tmp_path / "x" / "val2017"
