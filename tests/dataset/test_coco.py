"""COCO loading: valid input round-trips and agrees with pycocotools on the boxes that are kept; input that is
not a COCO dict raises CocoFormatError; the problem table and its summary.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.coco_json import CocoFormatError, parse_json_lean
from tests.dataset.coco_cases import ann_rec, coco_dict, image_rec, only


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


def test_empty_annotations_and_images():
    ds = load_coco({"images": [], "annotations": [], "categories": []})
    assert ds.num_images == 0 and ds.num_annotations == 0
    assert ds.boxes_xyxy.shape == (0, 4) and ds.boxes_xyxy.dtype == np.float32
    assert ds.ann_offsets.tolist() == [0]


def test_valid_records_round_trip(tmp_path):
    anns = [
        ann_rec(1, 1, (10, 20, 30, 40)),
        ann_rec(2, 2, (0.5, 0.25, 3.5, 7.75), category_id=5),
        ann_rec(3, 1, (1, 2, 3, 4)),
    ]
    coco = coco_dict(annotations=anns)
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
    assert only(ds, "crowd")["severity"] == "info"
    # areas are COCO's own segment areas (what COCOeval's small/medium/large use)
    by_id = {a["id"]: a["area"] for a in raw["annotations"]}
    np.testing.assert_allclose(ds.areas, [by_id[i] for i in ds.ann_ids.tolist()])


def test_polygons_are_cut_but_rle_and_strings_survive():
    coco = coco_dict(
        images=[image_rec(1, file_name='x "segmentation": [[1,2]] y.jpg')],
        annotations=[
            ann_rec(1, segmentation=[[1.5, 2, 3, 4e1, 5, 6], [7, 8, 9, 10, 11, 12]]),
            ann_rec(2, iscrowd=1, segmentation={"counts": [5, 3, 2], "size": [80, 100]}),
            ann_rec(3, segmentation={"counts": "ab[]c\\\\", "size": [80, 100]}),
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
    coco = coco_dict(annotations=[ann_rec(1)])
    ds = load_coco(json.dumps(coco).encode("utf-16"))
    assert ds.num_annotations == 1


def test_string_image_ids_are_supported():
    coco = coco_dict(images=[image_rec("a"), image_rec("b")], annotations=[ann_rec(1, "b"), ann_rec(2, "a")])
    ds = load_coco(coco)
    assert ds.image_ids.tolist() == ["a", "b"]
    assert ds.ann_ids.tolist() == [2, 1]
    assert ds.problems.empty


def test_missing_categories_are_taken_from_annotations():
    coco = coco_dict(annotations=[ann_rec(1, category_id=7), ann_rec(2, category_id=3)])
    del coco["categories"]
    ds = load_coco(coco)
    assert ds.category_ids.tolist() == [3, 7]
    assert ds.category_names == ["id 3", "id 7"]
    assert only(ds, "missing_key")["severity"] == "warning"
    assert ds.num_annotations == 2


def test_missing_annotations_key_means_empty_images():
    coco = coco_dict()
    del coco["annotations"]
    ds = load_coco(coco)
    assert ds.num_images == 2 and ds.num_annotations == 0
    assert only(ds, "missing_key")["severity"] == "warning"


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
    coco = coco_dict(annotations=[ann_rec(k, segmentation=[[1.0] * 50]) for k in range(1, 30)])
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
    text = json.dumps(coco_dict(annotations=[ann_rec(1)]))
    with pytest.raises(CocoFormatError, match="invalid JSON at line 1"):
        load_coco(text[: len(text) // 2].encode())


def test_missing_file_and_size_limit(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_coco(tmp_path / "nope.json")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(coco_dict()))
    with pytest.raises(ValueError, match="over the"):
        load_coco(path, max_bytes=10)
    with pytest.raises(ValueError, match="over the"):
        load_coco(path.read_bytes(), max_bytes=10)


def test_gzipped_json_is_read_and_the_cap_applies_to_the_decompressed_size(tmp_path):
    text = json.dumps(coco_dict(annotations=[ann_rec(1)])).encode()
    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(text))
    ds = load_coco(path)
    assert ds.name == "a.json.gz" and ds.num_images == 2 and ds.num_annotations == 1
    assert load_coco(gzip.compress(text)).num_annotations == 1  # uploaded bytes too, whatever the name
    assert load_coco(path, max_bytes=len(text)).num_annotations == 1
    with pytest.raises(CocoFormatError, match=r"a.json.gz decompresses to more than the .* limit .*decompression bomb"):
        load_coco(path, max_bytes=len(text) - 1)


def test_a_decompression_bomb_is_refused_with_bounded_memory():
    bomb = gzip.compress(b"{" + b" " * 50_000_000 + b"}", compresslevel=9)  # 50 MB from about 50 KB
    assert len(bomb) < 1_000_000
    with pytest.raises(CocoFormatError, match=r"decompresses to more than the 10 MB limit"):
        load_coco(bomb, max_bytes=10_000_000)


@pytest.mark.parametrize("data", [b"\x1f\x8b\x08\x00 compressed", gzip.compress(b'{"images": []}', mtime=0)[:-6]])
def test_a_corrupt_gzip_file_is_named(data):
    with pytest.raises(CocoFormatError, match="is a gzip file that cannot be decompressed"):
        load_coco(data)


def test_annotations_not_a_list():
    coco = coco_dict()
    coco["annotations"] = {"id": 1}
    ds = load_coco(coco)
    assert ds.num_annotations == 0
    assert only(ds, "missing_key")["severity"] == "error"


def test_size_buckets_use_the_area_field():
    anns = [
        ann_rec(1, bbox=(0, 0, 40, 40), area=30.0**2),
        ann_rec(2, bbox=(0, 0, 50, 50)),
        ann_rec(3, bbox=(0, 0, 99, 79)),
    ]
    ds = load_coco(coco_dict(annotations=anns))
    assert ds.size_bucket().tolist() == [0, 1, 1]
    ds = load_coco(coco_dict(images=[image_rec(1, 200, 200)], annotations=[ann_rec(1, bbox=(0, 0, 100, 100))]))
    assert ds.size_bucket().tolist() == [2]


def test_problem_table_columns_and_summary():
    ds = load_coco(
        coco_dict(annotations=[ann_rec(1, category_id=99), ann_rec(2, bbox=(0, 0, -1, 1)), ann_rec(3, iscrowd=1)])
    )
    assert list(ds.problems.columns) == ["severity", "kind", "image_id", "annotation_id", "message"]
    summary = ds.problem_summary()
    assert summary["severity"].tolist()[:2] == ["error", "error"]
    assert summary["count"].sum() == len(ds.problems)
    frame = ds.annotations_frame()
    assert frame["category"].tolist() == ["cat"] and frame["size"].tolist() == ["medium"]
    assert math.isclose(frame["area"].iloc[0], 1200.0)
