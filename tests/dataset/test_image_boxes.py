"""Tests for explorer.dataset.image_boxes: YOLO, COCO (the one reader, by file name, crowd regions) and table
input, clipping and skipping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.dataset.coco import load_coco
from explorer.dataset.image_boxes import (
    BoxSet,
    boxes_from_coco,
    boxes_from_rows,
    boxes_from_scene,
    boxes_from_voc,
    parse_yolo,
    sanitize_boxes,
)
from explorer.synthetic import CLASS_NAMES, make_scene
from tests.dataset.format_cases import voc_object, voc_xml


@pytest.mark.parametrize(
    ("boxes", "kept", "n_warn", "n_notes"),
    [
        (np.zeros((0, 4)), 0, 0, 0),
        ([[10, 10, 20, 20]], 1, 0, 0),
        ([[-5, 10, 20, 120]], 1, 0, 1),  # clipped
        ([[10, 10, 10, 20]], 0, 1, 0),  # zero width
        ([[30, 10, 20, 20]], 0, 1, 0),  # negative width
        ([[200, 200, 300, 300]], 0, 1, 0),  # outside
        ([[0, 0, np.nan, 5]], 0, 1, 0),
    ],
)
def test_sanitize(boxes, kept: int, n_warn: int, n_notes: int) -> None:
    bs = sanitize_boxes(boxes, None, 100, 100)
    assert len(bs) == kept and bs.boxes.dtype == np.float32 and bs.boxes.shape == (kept, 4)
    assert len(bs.warnings) == n_warn and len(bs.notes) == n_notes
    assert len(bs.skipped) == n_warn


def test_sanitize_messages() -> None:
    bs = sanitize_boxes([[-5, 10, 20, 120], [10, 10, 10, 20]], ["a", "b"], 100, 100)
    assert bs.boxes.tolist() == [[0, 10, 20, 100]] and bs.classes == ["a"]
    assert "box 1" in bs.notes[0] and "clipped" in bs.notes[0]
    assert bs.warnings == ["box 2 [10.0, 10.0, 10.0, 20.0]: skipped, zero or negative size (w=0, h=10)"]
    with pytest.raises(ValueError, match="class names"):
        sanitize_boxes([[0, 0, 1, 1]], ["a", "b"], 10, 10)


def test_parse_yolo_names_bad_lines() -> None:
    text = "\n".join(
        [
            "0 0.5 0.5 0.2 0.4",
            "",
            "# a comment",
            "1 0.1 0.1 0.4",  # line 4: too few
            "2 0.5 0.5 abc 0.1",  # line 5: not a number
            "x 0.5 0.5 0.1 0.1",  # line 6: bad class
            "3 320 240 50 50",  # line 7: pixels
            "4 0.5 0.5 0 0.1",  # line 8: zero width
            "5 0.95 0.5 0.2 0.2 0.9",  # line 9: confidence ignored, clipped at the right
        ]
    )
    bs = parse_yolo(text.encode(), 200, 100, class_names=["car", "dog"])
    assert bs.classes == ["car", "5"]
    np.testing.assert_allclose(bs.boxes, [[80, 30, 120, 70], [170, 40, 200, 60]], atol=1e-4)
    warned = " | ".join(bs.warnings)
    for n in (4, 5, 6, 7, 8):
        assert f"line {n}" in warned
    assert "line 9" in bs.notes[0] and "clipped" in bs.notes[0]
    assert "line 1" not in warned


def test_parse_yolo_box_to_the_edge_is_not_reported_as_clipped() -> None:
    """Regression: a COCO box that ends on the image edge, written with six decimals, overshoots by ~1e-4 px
    and was reported as 'clipped to the image -> [...]' with identical numbers."""
    w, h = 640, 428
    line = "1 0.338320 0.589533 0.577109 0.820935"  # COCO 350679's person box, bottom at y = 428.000214
    bs = parse_yolo(line, w, h)
    assert bs.notes == [] and len(bs) == 1
    assert bs.boxes[0, 3] <= h
    far = parse_yolo("0 0.5 0.9 0.2 0.3", w, h)  # 0.05 * 428 = 21 px below the image
    assert len(far.notes) == 1 and "clipped" in far.notes[0]


def test_parse_yolo_not_text() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_yolo(b"\xff\xfe\x00\x81garbage", 10, 10)


@pytest.mark.parametrize(
    ("token", "cid"),
    [("1.0", "b"), ("1e0", "b"), ("0.0", "a"), ("1e2", "100")],
)
def test_parse_yolo_accepts_integral_float_class_ids(token: str, cid: str) -> None:
    bs = parse_yolo(f"{token} 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.1 0.1\n", 100, 80, class_names=["a", "b"])
    assert bs.classes == [cid, "a"] and bs.warnings == []


def _coco() -> dict:
    return {
        "images": [{"id": 1, "file_name": "dir/a.jpg", "width": 100, "height": 50}, {"id": 2, "file_name": "B.JPG"}],
        "annotations": [
            {"id": 10, "image_id": 1, "bbox": [10, 10, 20, 10], "category_id": 1},
            {"id": 11, "image_id": 1, "bbox": [90, 40, 20, 20], "category_id": 2},  # clipped
            {"id": 12, "image_id": 1, "bbox": [5, 5, 0, 3], "category_id": 1},  # zero width
            {"id": 13, "image_id": 1, "bbox": [1, 1, 2, 2], "category_id": 1, "iscrowd": 1},
            {"id": 14, "image_id": 1, "bbox": "oops", "category_id": 1},
            {"id": 15, "image_id": 2, "bbox": [0, 0, 5, 5], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bike"}],
    }


def test_coco_matched_by_file_name() -> None:
    ds = load_coco(json.dumps(_coco()).encode())
    bs = boxes_from_coco(ds, "upload/a.jpg", 100, 50)
    assert bs.boxes.tolist() == [[10, 10, 30, 20], [90, 40, 100, 50]]  # 11 clamped to the image by the reader
    assert bs.classes == ["person", "bike"]
    assert bs.crowd.tolist() == [[1, 1, 3, 3]]  # annotation 13: a crowd region, not a box to match
    warned = " | ".join(bs.warnings)
    assert "annotation 12: bbox [5, 5, 0, 3] has width or height <= 0; dropped" in warned
    assert 'annotation 14: bbox "oops"' in warned and "annotation 11" not in warned
    assert any(n.startswith("annotation 11:") and "clamped" in n for n in bs.notes)
    assert any("1 crowd region" in n for n in bs.notes)
    mismatch = boxes_from_coco(ds, "a.jpg", 95, 45)
    assert any("says 100x50 but the image is 95x45" in n for n in mismatch.notes)
    assert mismatch.boxes.tolist() == [[10, 10, 30, 20], [90, 40, 95, 45]]  # clipped to the image as it is


def test_coco_lookup_by_file_name_full_then_base_then_case() -> None:
    coco = _coco()
    coco["images"][1].update(width=10, height=10)
    coco["images"].append({"id": 3, "file_name": "other/a.jpg", "width": 100, "height": 50})
    ds = load_coco(coco)
    assert ds.index_of("other/a.jpg") == 2  # the full name first
    assert ds.index_of("a.jpg") == 0  # then the base name, first in file order
    assert ds.index_of("C:\\photos\\a.jpg") == 0  # Windows paths too
    assert ds.index_of("b.jpg") == 1  # then the base name ignoring case
    assert ds.index_of("zzz.png") is None
    assert len(boxes_from_coco(ds, "b.jpg", 10, 10)) == 1


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("Infinity", "Infinity is not a finite number"),
        ("NaN", "NaN is not a finite number"),
        ("1e400", "Infinity is not a finite number"),
        ("1e30", "1e+30 is over the 100,000 px limit"),
        (str(10**400), "is over the 100,000 px limit"),
    ],
)
def test_coco_entry_with_an_impossible_size_is_a_clear_value_error(token: str, reason: str) -> None:
    text = json.dumps(_coco()).replace('"width": 100', f'"width": {token}')
    ds = load_coco(text.encode())
    with pytest.raises(ValueError, match=r"no usable image named 'a\.jpg'"):
        boxes_from_coco(ds, "a.jpg", 100, 50)
    assert any(reason in m for m in ds.problems["message"])  # the reader says why the image is not usable


def test_coco_values_python_cannot_hold_are_skipped_not_crashes() -> None:
    coco = _coco()
    coco["categories"].append({"id": [3], "name": "unhashable"})
    coco["annotations"][0]["category_id"] = {"id": 1}
    text = json.dumps(coco).replace("[90, 40, 20, 20]", f"[90, 40, {10**400}, 20]")
    bs = boxes_from_coco(load_coco(text.encode()), "a.jpg", 100, 50)
    assert bs.boxes.shape == (0, 4) and bs.crowd.tolist() == [[1, 1, 3, 3]]
    warned = " | ".join(bs.warnings)
    assert "annotation 10:" in warned and "annotation 11:" in warned


def test_rows_and_sizes_python_cannot_hold() -> None:
    bs = boxes_from_rows([{"x1": 0, "y1": 0, "x2": 10**400, "y2": 5}, {"x1": 1, "y1": 1, "x2": 4, "y2": 4}], 10, 10)
    assert bs.boxes.tolist() == [[1, 1, 4, 4]] and "row 1: skipped, non-finite" in bs.warnings[0]
    with pytest.raises(ValueError, match="image size must be positive"):
        sanitize_boxes([[0, 0, 5, 5]], None, float("nan"), 80)


def test_coco_no_such_image() -> None:
    with pytest.raises(ValueError, match=r"no usable image named 'zzz\.png' in the COCO file \(1 images; e\.g\. dir/a"):
        boxes_from_coco(load_coco(_coco()), "zzz.png", 10, 10)


def test_rows() -> None:
    rows = [
        {"x1": 1, "y1": 2, "x2": 11, "y2": 12, "label": "cat"},
        {"x1": None, "y1": None, "x2": None, "y2": None, "label": None},  # fresh empty row: ignored
        {"x1": 1, "y1": None, "x2": 5, "y2": 5, "label": "x"},
        {"x1": 5, "y1": 5, "x2": 1, "y2": 9, "label": None},
    ]
    bs = boxes_from_rows(rows, 50, 50)
    assert bs.boxes.tolist() == [[1, 2, 11, 12]] and bs.classes == ["cat"]
    assert len(bs.warnings) == 2 and "row 3" in bs.warnings[0] and "row 4" in bs.warnings[1]
    assert BoxSet(bs.boxes, bs.classes).table_rows() == [{"x1": 1, "y1": 2, "x2": 11, "y2": 12, "label": "cat"}]


def test_scene_boxes() -> None:
    img, anns = make_scene(3)
    bs = boxes_from_scene(anns, img.shape[1], img.shape[0], CLASS_NAMES)
    assert len(bs) == len(anns) and set(bs.classes) <= set(CLASS_NAMES)
    assert (bs.boxes[:, 2] > bs.boxes[:, 0]).all()


def test_boxes_from_voc_difficult_as_crowd_and_problems() -> None:
    objects = voc_object("cat", (1, 2, 10, 20)) + voc_object("dog", (5, 5, 80, 40), difficult=1)
    objects += "<object><name>bad</name><bndbox><xmin>x</xmin></bndbox></object>"
    bs = boxes_from_voc(voc_xml("a.jpg", (100, 50), objects).encode(), 100, 60, name="a.xml")
    assert bs.boxes.tolist() == [[0.0, 1.0, 10.0, 20.0]] and bs.classes == ["cat"]
    assert bs.crowd.tolist() == [[4.0, 4.0, 80.0, 40.0]] and bs.crowd.dtype == np.float32
    assert bs.notes[0] == "the XML's <size> says 100x50 but the image is 100x60"
    assert "1 difficult object(s): ignore regions" in bs.notes[1]
    assert len(bs.warnings) == 1 and bs.warnings[0].startswith("object 3 has no usable <bndbox>")
    with pytest.raises(ValueError, match=r"a\.xml is not well-formed XML"):
        boxes_from_voc(b"<annotation>", 10, 10, name="a.xml")
    with pytest.raises(ValueError, match="DOCTYPE"):
        boxes_from_voc(b'<!DOCTYPE a [<!ENTITY x "y">]><annotation/>', 10, 10)
    with pytest.raises(ValueError, match="not a Pascal VOC annotation"):
        boxes_from_voc(b"<coco/>", 10, 10)
