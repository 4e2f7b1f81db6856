"""Annotation records: every malformed case is dropped or repaired, and reported (kind, severity, message)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.dataset.coco import load_coco
from tests.dataset.coco_cases import ann_rec, coco_dict, image_rec, only, problem_kinds


@pytest.mark.parametrize(
    ("bbox", "kind"),
    [
        ((10, 10, 0, 5), "empty_box"),
        ((10, 10, 5, 0), "empty_box"),
        ((10, 10, -3, 5), "empty_box"),
        ((10, 10, 5, -1e-9), "empty_box"),
        ((200, 10, 5, 5), "box_outside_image"),
        ((-50, 10, 20, 5), "box_outside_image"),
        ((10, 10, 5), "invalid_bbox"),
        ((10, 10, 5, 5, 5), "invalid_bbox"),
        (("10", 10, 5, 5), "invalid_bbox"),
        ((None, 10, 5, 5), "invalid_bbox"),
        ((True, 10, 5, 5), "invalid_bbox"),
    ],
)
def test_bad_boxes_are_dropped_and_reported(bbox, kind):
    coco = coco_dict(annotations=[ann_rec(1), ann_rec(2, bbox=bbox)])
    ds = load_coco(coco)
    assert ds.ann_ids.tolist() == [1]
    row = only(ds, kind)
    assert row["severity"] == "error"
    assert row["annotation_id"] == 2 and row["image_id"] == 1


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_dropped(token):
    text = json.dumps(coco_dict(annotations=[ann_rec(1), ann_rec(2, bbox=(1, 2, 3, 4))]))
    text = text.replace('"bbox": [1, 2, 3, 4]', f'"bbox": [1, {token}, 3, 4]')
    ds = load_coco(text.encode())
    assert ds.ann_ids.tolist() == [1]
    row = only(ds, "non_finite")
    assert row["annotation_id"] == 2 and "NaN or infinite" in row["message"]


_HUGE = 2**70  # a JSON integer that does not fit in int64


@pytest.mark.parametrize(
    ("where", "kind", "message"),
    [
        ("annotation id", "missing_key", "does not fit in 64 bits"),
        ("annotation image_id", "missing_image", "not in 'images'"),
        ("annotation category_id", "unknown_category", "not in 'categories'"),
        ("annotation iscrowd", "invalid_iscrowd", "not 0 or 1; taken as 1"),
        ("image id", "missing_key", "does not fit in 64 bits"),
        ("category id", "invalid_record", "does not fit in 64 bits"),
    ],
)
def test_integers_beyond_int64_are_record_problems(where, kind, message):
    coco = coco_dict(images=[image_rec(1), image_rec(2)], annotations=[ann_rec(1), ann_rec(2, image_id=2)])
    if where.startswith("annotation"):
        coco["annotations"][1][where.split()[1]] = _HUGE
    elif where == "image id":
        coco["images"][1]["id"] = _HUGE
    else:
        coco["categories"].append({"id": _HUGE, "name": "huge"})
    ds = load_coco(json.dumps(coco).encode())
    rows = ds.problems[ds.problems["kind"] == kind]
    assert len(rows) == 1 and message in rows.iloc[0]["message"], ds.problems.to_string()
    assert 1 in ds.ann_ids.tolist()


@pytest.mark.parametrize(
    ("field", "token", "kind", "message"),
    [
        ("area", str(10**400), "missing_area", "no valid 'area'"),
        ("bbox", f"[1, 2, {10**400}, 4]", "non_finite", "beyond float64"),
        ("bbox", "[-1e39, 2, 1e39, 4]", "non_finite", "beyond the 32-bit float range"),
    ],
)
def test_numbers_beyond_float_range_are_record_problems(field, token, kind, message):
    text = json.dumps(coco_dict(annotations=[ann_rec(1), ann_rec(2, bbox=(1, 2, 3, 4))]))
    old = '"area": 12.0' if field == "area" else '"bbox": [1, 2, 3, 4]'
    assert old in text
    ds = load_coco(text.replace(old, f'"{field}": {token}').encode())
    row = only(ds, kind)
    assert message in row["message"]
    assert np.isfinite(ds.boxes_xyxy).all() and np.isfinite(ds.areas).all()


def test_partly_outside_box_is_clamped_with_a_warning():
    ds = load_coco(coco_dict(annotations=[ann_rec(1, 2, bbox=(50, -4, 20, 10))]))  # image 2 is 64x48
    np.testing.assert_array_equal(ds.boxes_xyxy, [[50, 0, 64, 6]])
    row = only(ds, "box_outside_image")
    assert row["severity"] == "warning" and "clamped" in row["message"] and "6 px" in row["message"]


def test_missing_keys_are_reported():
    anns = [ann_rec(1), ann_rec(2), ann_rec(3), ann_rec(4), ann_rec(5)]
    del anns[1]["bbox"]
    del anns[2]["image_id"]
    del anns[3]["category_id"]
    del anns[4]["id"]
    ds = load_coco(coco_dict(annotations=anns))
    assert ds.ann_ids.tolist() == [1]
    kinds = sorted(problem_kinds(ds))
    assert kinds == ["invalid_bbox", "missing_image", "missing_key", "unknown_category"]
    assert (ds.problems["severity"] == "error").all()


def test_missing_iscrowd_and_area_are_repaired():
    anns = [ann_rec(1), ann_rec(2, bbox=(0, 0, 10, 20))]
    del anns[0]["iscrowd"]
    del anns[1]["area"]
    ds = load_coco(coco_dict(annotations=anns))
    assert ds.ann_ids.tolist() == [1, 2]
    assert ds.iscrowd.tolist() == [False, False]
    assert ds.areas.tolist() == [1200.0, 200.0]
    assert only(ds, "missing_iscrowd")["severity"] == "warning"
    assert only(ds, "missing_area")["severity"] == "info"


def test_unknown_category_and_missing_image():
    ds = load_coco(coco_dict(annotations=[ann_rec(1, category_id=99), ann_rec(2, image_id=42), ann_rec(3)]))
    assert ds.ann_ids.tolist() == [3]
    assert "99" in only(ds, "unknown_category")["message"]
    row = only(ds, "missing_image")
    assert row["image_id"] == 42 and "not in 'images'" in row["message"]


def test_duplicate_ids():
    images = [image_rec(1), image_rec(1, 10, 10), image_rec(2)]
    anns = [ann_rec(7, 1), ann_rec(7, 2), ann_rec(8, 2)]
    cats = [{"id": 1, "name": "cat"}, {"id": 1, "name": "again"}]
    ds = load_coco(coco_dict(images=images, annotations=anns, categories=cats))
    assert ds.image_ids.tolist() == [1, 2] and ds.widths.tolist() == [100, 100]  # first image 1 kept
    assert ds.category_names == ["cat"]
    assert ds.ann_ids.tolist() == [7, 7, 8]  # duplicate annotation ids are kept, with a warning
    dup = ds.problems[ds.problems["kind"] == "duplicate_id"]
    assert dup["severity"].tolist() == ["error", "error", "warning"]


def test_crowd_boxes_are_flagged_and_reported():
    anns = [
        ann_rec(1),
        ann_rec(2, iscrowd=1, segmentation={"counts": [1, 2], "size": [80, 100]}),
        ann_rec(3, iscrowd=2),
    ]
    ds = load_coco(coco_dict(annotations=anns))
    assert ds.iscrowd.tolist() == [False, True, True]
    assert "2 crowd" in only(ds, "crowd")["message"]
    assert only(ds, "invalid_iscrowd")["annotation_id"] == 3
    frame = ds.images_frame()
    assert frame.loc[0, "boxes"] == 1 and frame.loc[0, "crowd_boxes"] == 2
