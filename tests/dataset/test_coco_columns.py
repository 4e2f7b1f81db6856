"""The columnar COCO reader (msgspec records -> numpy columns) gives the dict reader's dataset, bit for bit.

Every case is read twice: from its JSON bytes (the columnar path, checked to have been taken) and from the parsed
dict (``load_coco(dict)``, the dict path). Cases: records with every problem the typed schema lets through, random
files with problems injected, the synthetic sample, coco-mini; and the inputs the columnar path must hand back to
the dict path (the typed schema does not describe them, or Python's ``json`` refuses what msgspec reads).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from explorer.dataset.coco import CocoFormatError, load_coco
from explorer.dataset.coco_columns import decode_columns
from explorer.synthetic import sample_dataset
from tests.dataset.coco_cases import ann_rec, coco_dict, image_rec

_ARRAYS = [
    "image_ids",
    "heights",
    "widths",
    "category_ids",
    "ann_ids",
    "ann_image",
    "ann_category",
    "boxes_xyxy",
    "areas",
    "iscrowd",
    "ann_offsets",
]


def assert_same_dataset(a, b) -> None:
    """Every column equal, dtype included, bit for bit; the problems table equal; names and counts equal."""
    for key in _ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes() if x.dtype != object else x.tolist() == y.tolist(), key
    assert a.file_names == b.file_names
    assert a.category_names == b.category_names
    assert a.counts == b.counts
    pd.testing.assert_frame_equal(a.problems, b.problems)


def both_paths(coco: dict):
    raw = json.dumps(coco).encode()
    assert decode_columns(raw) is not None, "the columnar path was not taken"
    return load_coco(raw, name="x"), load_coco(coco, name="x")


def _anns(*recs):
    return [ann_rec(k + 1, **r) for k, r in enumerate(recs)]


CASES = {
    "empty": coco_dict(),
    "clean": coco_dict(annotations=_anns({}, {"image_id": 2, "bbox": (1, 2, 3, 4), "category_id": 5})),
    "int and float boxes": coco_dict(annotations=_anns({"bbox": (1.5, 2, 3.25, 4)}, {"bbox": (0, 0, 1e-3, 2)})),
    "missing image": coco_dict(annotations=_anns({"image_id": 9}, {}, {"image_id": -3})),
    "image sizes": coco_dict(
        images=[image_rec(1, 0, 80), image_rec(2, 200_000, 5), image_rec(3, -1, -1), image_rec(4)],
        annotations=_anns({"image_id": 1}, {"image_id": 1}, {"image_id": 2}, {"image_id": 4}),
    ),
    "duplicate images": coco_dict(
        images=[image_rec(1), image_rec(1, 5, 5), image_rec(2, 0, 1), image_rec(2)],
        annotations=_anns({"image_id": 1}, {"image_id": 2}),
    ),
    "unknown category": coco_dict(annotations=_anns({"category_id": 7}, {"category_id": 5}, {"image_id": 8})),
    "no categories": {
        k: v for k, v in coco_dict(annotations=_anns({"category_id": 9}, {})).items() if k != "categories"
    },
    "empty categories": coco_dict(annotations=_anns({"category_id": 9}), categories=[]),
    "odd categories": coco_dict(
        annotations=_anns({}), categories=[{"id": 1}, {"id": 1, "name": "x"}, {"id": 2, "name": ""}, {"id": 2**70}]
    ),
    "empty boxes": coco_dict(annotations=_anns({"bbox": (1, 2, 0, 4)}, {"bbox": (1, 2, 3, -4)}, {})),
    "outside": coco_dict(
        annotations=_anns({"bbox": (-5, 2, 30, 4)}, {"bbox": (90, 70, 30, 40)}, {"bbox": (200, 2, 3, 4)}, {})
    ),
    "beyond float32": coco_dict(annotations=_anns({"bbox": (3e38, 1, 3e38, 2)}, {"bbox": (1, 2, 1e39, 2)})),
    "iscrowd": coco_dict(annotations=_anns({"iscrowd": 1}, {"iscrowd": 2}, {"iscrowd": -7}, {})),
    "iscrowd missing": coco_dict(
        annotations=[{k: v for k, v in a.items() if k != "iscrowd"} for a in _anns({}, {})] + _anns({"iscrowd": 3})
    ),
    "area": coco_dict(
        annotations=[{k: v for k, v in a.items() if k != "area"} for a in _anns({})]
        + _anns({"area": -1}, {"area": 7}, {"area": 1e300})
    ),
    "duplicate ann ids": coco_dict(annotations=_anns({}, {}) + _anns({"image_id": 2})),
    "big ids": coco_dict(annotations=[ann_rec(2**63 - 1), ann_rec(-(2**63))]),
    "no annotations": {k: v for k, v in coco_dict().items() if k != "annotations"},
    "no images": coco_dict(images=[], annotations=_anns({})),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_columnar_reader_gives_the_dict_readers_dataset(case):
    assert_same_dataset(*both_paths(CASES[case]))


def _random_coco(rng: np.random.Generator) -> dict:
    n_img = int(rng.integers(0, 12))
    images = [
        image_rec(int(i), int(rng.integers(-2, 300)), int(rng.integers(1, 300))) for i in rng.integers(0, 15, n_img)
    ]
    anns = []
    for _k in range(int(rng.integers(0, 40))):
        xywh = rng.uniform(-50, 320, 4).round(int(rng.integers(0, 3)))
        box = [int(v) if rng.uniform() < 0.5 else float(v) for v in xywh]
        rec = ann_rec(int(rng.integers(0, 30)), int(rng.integers(0, 16)), box, int(rng.integers(0, 7)))
        rec["iscrowd"] = int(rng.choice([0, 0, 0, 1, 2]))
        for key in ("iscrowd", "area"):
            if rng.uniform() < 0.1:
                del rec[key]
        anns.append(rec)
    cats = [{"id": int(c), "name": f"c{c}"} for c in rng.integers(0, 6, int(rng.integers(0, 5)))]
    return coco_dict(images=images, annotations=anns, categories=cats)


def test_columnar_reader_on_random_files_with_problems():
    rng = np.random.default_rng(0)
    for _ in range(150):
        assert_same_dataset(*both_paths(_random_coco(rng)))


def test_columnar_reader_on_the_sample_dataset():
    raw = sample_dataset().read_bytes()
    assert decode_columns(raw) is not None
    assert_same_dataset(load_coco(raw), load_coco(json.loads(raw), name="uploaded JSON"))


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_columnar_reader_on_coco_mini(coco_mini, split):
    raw = (coco_mini / "annotations" / f"instances_{split}.json").read_bytes()
    assert decode_columns(raw) is not None
    assert_same_dataset(load_coco(raw), load_coco(json.loads(raw), name="uploaded JSON"))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"images": [{"id": "a", "width": 4, "height": 4}]}',  # string id
        b'{"images": [{"id": 1, "width": 4.0, "height": 4}]}',  # float width
        b'{"images": [{"id": 1, "width": 4, "height": 4, "file_name": null}]}',
        b'{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}',
        b'{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 1e400]}]}',
        b'{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, NaN]}]}',
        b'{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], '
        b'"iscrowd": true}]}',
        b'{"images": [], "annotations": [{"id": 9223372036854775808, "image_id": 1, "category_id": 1, '
        b'"bbox": [1, 2, 3, 4]}]}',
        b'{"images": [], "annotations": {}}',
        b'\xef\xbb\xbf{"images": []}',
    ],
)
def test_what_the_schema_does_not_describe_goes_to_the_dict_path(raw):
    assert decode_columns(raw) is None
    assert_same_dataset(load_coco(raw), load_coco(json.loads(raw.decode("utf-8-sig")), name="uploaded JSON"))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b'{"images": [], "info": "\xff\xfe"}', "UTF-8"),
        (b'{"images": [], "info": 1' + b"0" * 5000 + b"}", "4,300 digits"),
        (b'{"images": [], "info": "a"} x', "invalid JSON"),
        (b'{"images": [], "info": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    ],
)
def test_what_python_refuses_is_refused_as_before(raw, match):
    assert decode_columns(raw) is None
    with pytest.raises(CocoFormatError, match=match):
        load_coco(raw)
