"""Image and category records: sizes out of range, records that are not objects; the record-check examples."""

from __future__ import annotations

import json

import pytest

from explorer.dataset.coco import load_coco
from tests.dataset.coco_cases import ann_rec, coco_dict, image_rec, only, problem_kinds


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
    text = json.dumps(
        coco_dict(images=[image_rec(1), image_rec(2, width=640, height=480)], annotations=[ann_rec(1), ann_rec(2, 2)])
    )
    text = text.replace(f'"{side}": {640 if side == "width" else 480}', f'"{side}": {token}')
    ds = load_coco(text.encode())
    assert ds.image_ids.tolist() == [1] and ds.ann_ids.tolist() == [1]
    row = only(ds, "image_size")
    assert row["image_id"] == 2 and reason in row["message"]


def test_images_without_size_are_skipped_with_their_annotations():
    images = [image_rec(1), {"id": 2, "file_name": "b.jpg"}, image_rec(3, width=0), image_rec(4, height=12.5)]
    anns = [ann_rec(1, 1), ann_rec(2, 2), ann_rec(3, 2), ann_rec(4, 3)]
    ds = load_coco(coco_dict(images=images, annotations=anns))
    assert ds.image_ids.tolist() == [1]
    assert ds.ann_ids.tolist() == [1]
    rows = ds.problems[ds.problems["kind"] == "image_size"]
    assert rows["image_id"].tolist() == [2, 3, 4]
    assert "2 annotation(s)" in rows.iloc[0]["message"]
    assert "width missing" in rows.iloc[0]["message"]
    assert len(ds.problems) == 3  # no per-annotation rows for them


def test_records_that_are_not_objects():
    coco = coco_dict(images=[image_rec(1), 5], annotations=[ann_rec(1), "x", None])
    coco["categories"].append([1, 2])
    ds = load_coco(coco)
    assert ds.num_images == 1 and ds.num_annotations == 1
    assert problem_kinds(ds).count("invalid_record") == 4


def test_record_check_docstring_examples():
    import doctest

    from explorer.dataset import coco_annotations, coco_problems, coco_records

    for module in (coco_problems, coco_records, coco_annotations):
        assert doctest.testmod(module).failed == 0, module.__name__
