"""COCO loading and validation: synthetic records built here (detectron2 style), every malformed case, and
agreement with pycocotools on the boxes that are kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from explorer import synthetic
from explorer.dataset.coco import CocoFormatError, load_coco, parse_json_lean


def _image(image_id, width=100, height=80, **extra):
    return {"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height, **extra}


def _ann(ann_id, image_id=1, bbox=(10, 20, 30, 40), category_id=1, iscrowd=0, **extra):
    rec = {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), "iscrowd": iscrowd}
    ok = len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
    rec["area"] = float(bbox[2] * bbox[3]) if ok else 0.0
    rec["segmentation"] = [[10, 20, 40, 20, 40, 60]]
    rec.update(extra)
    return rec


def _coco(images=None, annotations=None, categories=None) -> dict:
    return {
        "images": [_image(1), _image(2, 64, 48)] if images is None else images,
        "annotations": [] if annotations is None else annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}] if categories is None else categories,
    }


def _kinds(ds) -> list[str]:
    return ds.problems["kind"].tolist()


def _only(ds, kind: str):
    rows = ds.problems[ds.problems["kind"] == kind]
    assert len(rows) == 1, ds.problems.to_string()
    return rows.iloc[0]


def _pycoco_boxes(path: Path) -> dict:
    """{annotation id: float32 xyxy clamped box} as torchvision's references build them from pycocotools."""
    coco = COCO(str(path))
    out = {}
    for img_id, img in coco.imgs.items():
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            b = np.asarray(ann["bbox"], dtype=np.float32)
            b[2:] += b[:2]
            b[0::2] = np.clip(b[0::2], 0, np.float32(img["width"]))
            b[1::2] = np.clip(b[1::2], 0, np.float32(img["height"]))
            if b[2] > b[0] and b[3] > b[1]:
                out[ann["id"]] = (b, ann["iscrowd"], ann["category_id"], ann["image_id"])
    return out


def _assert_agrees_with_pycocotools(ds, path: Path) -> None:
    ref = _pycoco_boxes(path)
    assert ds.num_annotations == len(ref)
    image_ids = ds.image_ids[ds.ann_image]
    for k, ann_id in enumerate(ds.ann_ids.tolist()):
        box, crowd, cat, img = ref[ann_id]
        np.testing.assert_array_equal(ds.boxes_xyxy[k], box)
        assert bool(ds.iscrowd[k]) == bool(crowd)
        assert ds.ann_category[k] == cat
        assert image_ids[k] == img


# --- valid input -------------------------------------------------------------------------------------------------


def test_empty_annotations_and_images():
    ds = load_coco({"images": [], "annotations": [], "categories": []})
    assert ds.num_images == 0 and ds.num_annotations == 0
    assert ds.boxes_xyxy.shape == (0, 4) and ds.boxes_xyxy.dtype == np.float32
    assert ds.ann_offsets.tolist() == [0]


def test_valid_records_round_trip(tmp_path):
    anns = [_ann(1, 1, (10, 20, 30, 40)), _ann(2, 2, (0.5, 0.25, 3.5, 7.75), category_id=5), _ann(3, 1, (1, 2, 3, 4))]
    coco = _coco(annotations=anns)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(coco))
    for source in (coco, json.dumps(coco).encode(), path, str(path)):
        ds = load_coco(source)
        assert ds.problems.empty
        assert ds.image_ids.tolist() == [1, 2]
        assert ds.heights.tolist() == [80, 48] and ds.widths.tolist() == [100, 64]
        assert ds.category_ids.tolist() == [1, 5] and ds.category_names == ["cat", "dog"]
        # grouped by image, file order within an image
        assert ds.ann_ids.tolist() == [1, 3, 2]
        assert ds.ann_offsets.tolist() == [0, 2, 3]
        np.testing.assert_array_equal(ds.boxes_xyxy[0], [10, 20, 40, 60])
        np.testing.assert_array_equal(ds.boxes_xyxy[2], np.float32([0.5, 0.25, 4.0, 8.0]))
        assert ds.ann_category.tolist() == [1, 1, 5]
    _assert_agrees_with_pycocotools(load_coco(path), path)


def test_agrees_with_pycocotools_on_synthetic_dataset(tmp_path):
    coco, _ = synthetic.make_dataset(12, seed=3)
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(coco))
    ds = load_coco(path)
    assert ds.problems.empty
    assert ds.num_annotations == len(coco["annotations"])
    _assert_agrees_with_pycocotools(ds, path)


@pytest.mark.parametrize("name", ["instances_val2017.json", "instances_train2017.json"])
def test_agrees_with_pycocotools_on_coco_mini(coco_mini, name):
    path = coco_mini / "annotations" / name
    ds = load_coco(path)
    _assert_agrees_with_pycocotools(ds, path)
    raw = json.loads(path.read_bytes())
    assert ds.num_images == len(raw["images"])
    assert dict(zip(ds.category_ids.tolist(), ds.category_names, strict=True)) == {
        c["id"]: c["name"] for c in raw["categories"]
    }
    crowd = sum(a["iscrowd"] for a in raw["annotations"])
    assert int(ds.iscrowd.sum()) == crowd > 0
    assert _only(ds, "crowd")["severity"] == "info"
    # areas are COCO's own segment areas (what COCOeval's small/medium/large use)
    by_id = {a["id"]: a["area"] for a in raw["annotations"]}
    np.testing.assert_allclose(ds.areas, [by_id[i] for i in ds.ann_ids.tolist()])


def test_polygons_are_cut_but_rle_and_strings_survive():
    coco = _coco(
        images=[_image(1, file_name='x "segmentation": [[1,2]] y.jpg')],
        annotations=[
            _ann(1, segmentation=[[1.5, 2, 3, 4e1, 5, 6], [7, 8, 9, 10, 11, 12]]),
            _ann(2, iscrowd=1, segmentation={"counts": [5, 3, 2], "size": [80, 100]}),
            _ann(3, segmentation={"counts": "ab[]c\\\\", "size": [80, 100]}),
        ],
    )
    for text in (json.dumps(coco), json.dumps(coco, indent=2), json.dumps(coco, separators=(",", ":"))):
        parsed = parse_json_lean(text.encode())
        anns = parsed["annotations"]
        assert anns[0]["segmentation"] == []
        assert anns[1]["segmentation"] == {"counts": [5, 3, 2], "size": [80, 100]}
        assert anns[2]["segmentation"]["counts"] == "ab[]c\\\\"
        assert parsed["images"][0]["file_name"] == 'x "segmentation": [[1,2]] y.jpg'
        assert [a["bbox"] for a in anns] == [a["bbox"] for a in coco["annotations"]]


def test_utf16_json_is_read():
    coco = _coco(annotations=[_ann(1)])
    ds = load_coco(json.dumps(coco).encode("utf-16"))
    assert ds.num_annotations == 1


def test_string_image_ids_are_supported():
    coco = _coco(images=[_image("a"), _image("b")], annotations=[_ann(1, "b"), _ann(2, "a")])
    ds = load_coco(coco)
    assert ds.image_ids.tolist() == ["a", "b"]
    assert ds.ann_ids.tolist() == [2, 1]
    assert ds.problems.empty


def test_missing_categories_are_taken_from_annotations():
    coco = _coco(annotations=[_ann(1, category_id=7), _ann(2, category_id=3)])
    del coco["categories"]
    ds = load_coco(coco)
    assert ds.category_ids.tolist() == [3, 7]
    assert ds.category_names == ["id 3", "id 7"]
    assert _only(ds, "missing_key")["severity"] == "warning"
    assert ds.num_annotations == 2


def test_missing_annotations_key_means_empty_images():
    coco = _coco()
    del coco["annotations"]
    ds = load_coco(coco)
    assert ds.num_images == 2 and ds.num_annotations == 0
    assert _only(ds, "missing_key")["severity"] == "warning"


# --- hard failures -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"   \n ", "empty"),
        (b"hello world", "not a COCO JSON file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a COCO JSON file"),
        (b"[1, 2, 3]", "top level is a JSON list"),
        (b'"just a string"', "not a COCO JSON file"),
        (b'{"annotations": []}', "no 'images' key"),
        (b'{"images": {"id": 1}}', "'images' is a dict"),
        (b"\xff\xfe\xfa\xfb{", "UTF-8|JSON"),
    ],
)
def test_hard_failures_raise_value_error(data, match):
    with pytest.raises(ValueError, match=match):
        load_coco(data)


_DEEP = 100_000


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"[" * _DEEP + b"]" * _DEEP, "nested too deeply"),
        (b'{"images": [' + b"[" * _DEEP + b"]" * _DEEP + b"]}", "nested too deeply"),
        (b'{"images": [], "categories": ' + b"[" * _DEEP + b"]" * _DEEP + b"}", "nested too deeply"),
        (b'{"a": ' * _DEEP + b"1" + b"}" * _DEEP, "nested too deeply"),
        (b'{"images": [{"id": ' + b"7" * 5000 + b"}]}", "a number in the JSON has more than 4,300 digits"),
    ],
    ids=["top-level", "inside-images", "categories", "objects", "5000-digits"],
)
def test_json_python_cannot_parse_is_a_format_error(data, match):
    """Deep nesting (RecursionError) and overlong integers (Python's digit limit) are named, not crashes."""
    with pytest.raises(CocoFormatError, match=match):
        load_coco(data)
    with pytest.raises(CocoFormatError, match=match):
        parse_json_lean(data)


def test_invalid_json_reports_line_and_column_of_the_original_text():
    coco = _coco(annotations=[_ann(k, segmentation=[[1.0] * 50]) for k in range(1, 30)])
    text = json.dumps(coco, indent=1)
    lines = text.splitlines()
    target = len(lines) - 3  # near the end, after many polygons that the fast path cuts out
    lines[target] = lines[target] + " oops"
    with pytest.raises(CocoFormatError) as info:
        load_coco("\n".join(lines).encode())
    err = info.value
    assert isinstance(err, ValueError)
    assert err.line == target + 1
    assert err.column == len(lines[target]) - len("oops") + 1  # 1-based, at the "o"
    assert f"line {target + 1}" in str(err)


def test_truncated_file_is_invalid_json():
    text = json.dumps(_coco(annotations=[_ann(1)]))
    with pytest.raises(CocoFormatError, match="invalid JSON at line 1"):
        load_coco(text[: len(text) // 2].encode())


def test_missing_file_and_size_limit(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_coco(tmp_path / "nope.json")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_coco()))
    with pytest.raises(ValueError, match="over the"):
        load_coco(path, max_bytes=10)
    with pytest.raises(ValueError, match="over the"):
        load_coco(path.read_bytes(), max_bytes=10)


# --- record problems ---------------------------------------------------------------------------------------------


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
    coco = _coco(annotations=[_ann(1), _ann(2, bbox=bbox)])
    ds = load_coco(coco)
    assert ds.ann_ids.tolist() == [1]
    row = _only(ds, kind)
    assert row["severity"] == "error"
    assert row["annotation_id"] == 2 and row["image_id"] == 1


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_dropped(token):
    text = json.dumps(_coco(annotations=[_ann(1), _ann(2, bbox=(1, 2, 3, 4))]))
    text = text.replace('"bbox": [1, 2, 3, 4]', f'"bbox": [1, {token}, 3, 4]')
    ds = load_coco(text.encode())
    assert ds.ann_ids.tolist() == [1]
    row = _only(ds, "non_finite")
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
    coco = _coco(images=[_image(1), _image(2)], annotations=[_ann(1), _ann(2, image_id=2)])
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
    ("side", "token", "reason"),
    [
        ("width", "1e30", "width 1e+30 is over the 100,000 px limit"),
        ("height", "1e30", "height 1e+30 is over the 100,000 px limit"),
        ("width", "4294967936", "width 4294967936 is over the 100,000 px limit"),
        ("width", "2147483648", "width 2147483648 is over the 100,000 px limit"),
        ("width", "1000000000", "over the 100,000 px limit"),
        ("width", "100001", "width 100001 is over the 100,000 px limit"),
        ("width", str(10**400), "over the 100,000 px limit"),
        ("width", "1e400", "width Infinity is not a finite number"),
        ("width", "NaN", "width NaN is not a finite number"),
        ("height", "-Infinity", "height -Infinity is not a finite number"),
        ("width", "-5", "width -5 is not positive"),
    ],
)
def test_image_sizes_out_of_range_are_record_problems(side, token, reason):
    """Sizes are bounded at load (MAX_IMAGE_SIDE): a corrupt size is one image's problem, never the dataset's."""
    text = json.dumps(_coco(images=[_image(1), _image(2, width=640, height=480)], annotations=[_ann(1), _ann(2, 2)]))
    text = text.replace(f'"{side}": {640 if side == "width" else 480}', f'"{side}": {token}')
    ds = load_coco(text.encode())
    assert ds.image_ids.tolist() == [1] and ds.ann_ids.tolist() == [1]
    row = _only(ds, "image_size")
    assert row["image_id"] == 2 and reason in row["message"]


@pytest.mark.parametrize(
    ("field", "token", "kind", "message"),
    [
        ("area", str(10**400), "missing_area", "no valid 'area'"),
        ("bbox", f"[1, 2, {10**400}, 4]", "non_finite", "beyond float64"),
        ("bbox", "[-1e39, 2, 1e39, 4]", "non_finite", "beyond the 32-bit float range"),
    ],
)
def test_numbers_beyond_float_range_are_record_problems(field, token, kind, message):
    text = json.dumps(_coco(annotations=[_ann(1), _ann(2, bbox=(1, 2, 3, 4))]))
    old = '"area": 12.0' if field == "area" else '"bbox": [1, 2, 3, 4]'
    assert old in text
    ds = load_coco(text.replace(old, f'"{field}": {token}').encode())
    row = _only(ds, kind)
    assert message in row["message"]
    assert np.isfinite(ds.boxes_xyxy).all() and np.isfinite(ds.areas).all()


def test_partly_outside_box_is_clamped_with_a_warning():
    ds = load_coco(_coco(annotations=[_ann(1, 2, bbox=(50, -4, 20, 10))]))  # image 2 is 64x48
    np.testing.assert_array_equal(ds.boxes_xyxy, [[50, 0, 64, 6]])
    row = _only(ds, "box_outside_image")
    assert row["severity"] == "warning" and "clamped" in row["message"] and "6 px" in row["message"]


def test_missing_keys_are_reported():
    anns = [_ann(1), _ann(2), _ann(3), _ann(4), _ann(5)]
    del anns[1]["bbox"]
    del anns[2]["image_id"]
    del anns[3]["category_id"]
    del anns[4]["id"]
    ds = load_coco(_coco(annotations=anns))
    assert ds.ann_ids.tolist() == [1]
    kinds = sorted(_kinds(ds))
    assert kinds == ["invalid_bbox", "missing_image", "missing_key", "unknown_category"]
    assert (ds.problems["severity"] == "error").all()


def test_missing_iscrowd_and_area_are_repaired():
    anns = [_ann(1), _ann(2, bbox=(0, 0, 10, 20))]
    del anns[0]["iscrowd"]
    del anns[1]["area"]
    ds = load_coco(_coco(annotations=anns))
    assert ds.ann_ids.tolist() == [1, 2]
    assert ds.iscrowd.tolist() == [False, False]
    assert ds.areas.tolist() == [1200.0, 200.0]
    assert _only(ds, "missing_iscrowd")["severity"] == "warning"
    assert _only(ds, "missing_area")["severity"] == "info"


def test_unknown_category_and_missing_image():
    ds = load_coco(_coco(annotations=[_ann(1, category_id=99), _ann(2, image_id=42), _ann(3)]))
    assert ds.ann_ids.tolist() == [3]
    assert "99" in _only(ds, "unknown_category")["message"]
    row = _only(ds, "missing_image")
    assert row["image_id"] == 42 and "not in 'images'" in row["message"]


def test_duplicate_ids():
    images = [_image(1), _image(1, 10, 10), _image(2)]
    anns = [_ann(7, 1), _ann(7, 2), _ann(8, 2)]
    cats = [{"id": 1, "name": "cat"}, {"id": 1, "name": "again"}]
    ds = load_coco(_coco(images=images, annotations=anns, categories=cats))
    assert ds.image_ids.tolist() == [1, 2] and ds.widths.tolist() == [100, 100]  # first image 1 kept
    assert ds.category_names == ["cat"]
    assert ds.ann_ids.tolist() == [7, 7, 8]  # duplicate annotation ids are kept, with a warning
    dup = ds.problems[ds.problems["kind"] == "duplicate_id"]
    assert dup["severity"].tolist() == ["error", "error", "warning"]


def test_images_without_size_are_skipped_with_their_annotations():
    images = [_image(1), {"id": 2, "file_name": "b.jpg"}, _image(3, width=0), _image(4, height=12.5)]
    anns = [_ann(1, 1), _ann(2, 2), _ann(3, 2), _ann(4, 3)]
    ds = load_coco(_coco(images=images, annotations=anns))
    assert ds.image_ids.tolist() == [1]
    assert ds.ann_ids.tolist() == [1]
    rows = ds.problems[ds.problems["kind"] == "image_size"]
    assert rows["image_id"].tolist() == [2, 3, 4]
    assert "2 annotation(s)" in rows.iloc[0]["message"]
    assert "width missing" in rows.iloc[0]["message"]
    assert len(ds.problems) == 3  # no per-annotation rows for them


def test_crowd_boxes_are_flagged_and_reported():
    anns = [_ann(1), _ann(2, iscrowd=1, segmentation={"counts": [1, 2], "size": [80, 100]}), _ann(3, iscrowd=2)]
    ds = load_coco(_coco(annotations=anns))
    assert ds.iscrowd.tolist() == [False, True, True]
    assert "2 crowd" in _only(ds, "crowd")["message"]
    assert _only(ds, "invalid_iscrowd")["annotation_id"] == 3
    frame = ds.images_frame()
    assert frame.loc[0, "boxes"] == 1 and frame.loc[0, "crowd_boxes"] == 2


def test_records_that_are_not_objects():
    coco = _coco(images=[_image(1), 5], annotations=[_ann(1), "x", None])
    coco["categories"].append([1, 2])
    ds = load_coco(coco)
    assert ds.num_images == 1 and ds.num_annotations == 1
    assert _kinds(ds).count("invalid_record") == 4


def test_annotations_not_a_list():
    coco = _coco()
    coco["annotations"] = {"id": 1}
    ds = load_coco(coco)
    assert ds.num_annotations == 0
    assert _only(ds, "missing_key")["severity"] == "error"


def test_size_buckets_use_the_area_field():
    anns = [_ann(1, bbox=(0, 0, 40, 40), area=30.0**2), _ann(2, bbox=(0, 0, 50, 50)), _ann(3, bbox=(0, 0, 99, 79))]
    ds = load_coco(_coco(annotations=anns))
    assert ds.size_bucket().tolist() == [0, 1, 1]
    ds = load_coco(_coco(images=[_image(1, 200, 200)], annotations=[_ann(1, bbox=(0, 0, 100, 100))]))
    assert ds.size_bucket().tolist() == [2]


def test_problem_table_columns_and_summary():
    ds = load_coco(_coco(annotations=[_ann(1, category_id=99), _ann(2, bbox=(0, 0, -1, 1)), _ann(3, iscrowd=1)]))
    assert list(ds.problems.columns) == ["severity", "kind", "image_id", "annotation_id", "message"]
    summary = ds.problem_summary()
    assert summary["severity"].tolist()[:2] == ["error", "error"]
    assert summary["count"].sum() == len(ds.problems)
    frame = ds.annotations_frame()
    assert frame["category"].tolist() == ["cat"] and frame["size"].tolist() == ["medium"]
    assert math.isclose(frame["area"].iloc[0], 1200.0)


def test_record_check_docstring_examples():
    import doctest

    from explorer.dataset import coco_annotations, coco_problems, coco_records

    for module in (coco_problems, coco_records, coco_annotations):
        assert doctest.testmod(module).failed == 0, module.__name__
