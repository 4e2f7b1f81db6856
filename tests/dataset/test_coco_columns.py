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


# ---------------------------------------------------------------------------------------------------------------
# The same columns read in blocks (coco_stream): every block size, odd layouts, strings that look like structure
# ---------------------------------------------------------------------------------------------------------------

_ODD_LAYOUTS = {
    "annotations first": b'{"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}], '
    b'"categories": [{"id": 1, "name": "a]}\\"[{"}], "images": [{"id": 1, "width": 9, "height": 9}]}',
    "strings with brackets and escapes": b'{"info": {"x": "\\\\\\"[[{{", "y": ["]", "\\\\"]}, "images": [{"id": 1, '
    b'"width": 9, "height": 9, "file_name": "a\\\\\\\\\\"b]}.jpg"}], "annotations": [{"id": 2, "image_id": 1, '
    b'"category_id": 1, "bbox": [1, 2, 3, 4], "segmentation": [[1, 2]], "x": "\\"}]"}], "categories": []}',
    "key written twice": b'{"images": [{"id": 1, "width": 9, "height": 9}], "annotations": [{"id": 1, "image_id": 1, '
    b'"category_id": 1, "bbox": [1, 2, 3, 4]}], "images": [{"id": 2, "width": 9, "height": 9}], '
    b'"annotations": [{"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]}]}',
    "empty arrays and spaces": b' { "images" :\n[ ] ,"annotations":[\t],  "categories" : [ ] } \n',
    "images as a key in a string": b'{"info": "\\"images\\": [", "images": [{"id": 1, "width": 9, "height": 9}]}',
}


_STREAMED = {
    "annotations first": ["annotations", "images"],
    "strings with brackets and escapes": ["images", "annotations"],
    "key written twice": ["images", "annotations", "images", "annotations"],
    "empty arrays and spaces": ["images", "annotations"],
    "images as a key in a string": ["images"],
}


def _stream(raw: bytes, tmp_path, block: int):
    from explorer.dataset.coco_stream import stream_columns

    path = tmp_path / "a.json"
    path.write_bytes(raw)
    return stream_columns(path, block_bytes=block)


def _streamed_keys(raw: bytes, tmp_path, block: int) -> list[str]:
    """The arrays that were read in blocks (not left in the skeleton, which would hide a scanning error)."""
    from explorer.dataset.coco_stream import _Reader

    path = tmp_path / "b.json"
    path.write_bytes(raw)
    reader = _Reader(path, block)
    reader.read()
    return [stream.key for stream in reader.streams]


def _same_columns(a, b) -> None:
    assert (a is None) == (b is None)
    if a is None:
        return
    for key in ("image_ids", "widths", "heights"):
        assert getattr(a, key).tolist() == getattr(b, key).tolist()
    assert a.file_names == b.file_names and a.categories == b.categories
    assert (a.annotations is None) == (b.annotations is None)
    if a.annotations is not None:
        for key in ("ids", "image_ids", "category_ids", "xywh", "iscrowd", "iscrowd_missing", "areas"):
            x, y = getattr(a.annotations, key), getattr(b.annotations, key)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), key
        for k in range(len(a.annotations.ids)):
            assert a.annotations.original.bbox(k) == b.annotations.original.bbox(k)
            assert a.annotations.original.iscrowd(k) == b.annotations.original.iscrowd(k)


@pytest.mark.parametrize("case", list(_ODD_LAYOUTS), ids=list(_ODD_LAYOUTS))
@pytest.mark.parametrize("block", [1, 5, 16, 97, 1 << 20])
def test_streamed_columns_equal_whole_file_columns(case, block, tmp_path):
    raw = _ODD_LAYOUTS[case]
    whole = decode_columns(raw)
    assert whole is not None
    assert whole.image_ids.tolist() == [im["id"] for im in json.loads(raw)["images"]]  # Python reads it the same
    _same_columns(_stream(raw, tmp_path, block), whole)
    assert _streamed_keys(raw, tmp_path, block) == _STREAMED[case]


def test_streamed_columns_on_the_cases_and_random_files(tmp_path):
    from explorer.dataset.coco import _build_columns

    rng = np.random.default_rng(1)
    cocos = list(CASES.values()) + [_random_coco(rng) for _ in range(40)]
    for k, coco in enumerate(cocos):
        raw = json.dumps(coco, indent=k % 3 or None).encode()
        cols = _stream(raw, tmp_path, int(rng.integers(1, 300)))
        _same_columns(cols, decode_columns(raw))
        assert_same_dataset(_build_columns(cols, "x"), load_coco(coco, name="x"))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"images": [{"id": 1, "width": 9, "height": 9},]}',  # trailing comma
        b'{"images": [{"id": 1, "width": 9, "height": 9} {"id": 2, "width": 9, "height": 9}]}',  # no comma
        b'{"images": [{"id": 1, "width": 9, "height": 9}], "annotations": 0}',  # a number where our marker goes
        b'{"images": [{"id": 1, "width": 9, "height": 9}]',  # unclosed
        b'{"images": [{"id": 1, "width": 9, "height": 9}]} x',
        b'{"images": [{"id": "1", "width": 9, "height": 9}]}',
        b'{"images": [], "info": "\xff"}',
    ],
)
@pytest.mark.parametrize("block", [3, 1 << 20])
def test_streamed_columns_refuse_what_the_whole_file_path_refuses(raw, block, tmp_path):
    assert decode_columns(raw) is None
    assert _stream(raw, tmp_path, block) is None


def _brackets_by_hand(text: bytes) -> list[tuple[int, int]]:
    """(position, depth after) of every bracket outside strings, one byte at a time."""
    out, depth, in_string, escaped = [], 0, False, False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == ord("\\"):
                escaped = True
            elif c == ord('"'):
                in_string = False
        elif c == ord('"'):
            in_string = True
        elif c in b"[{":
            depth += 1
            out.append((i, depth))
        elif c in b"]}":
            depth -= 1
            out.append((i, depth))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_block_scanner_finds_the_brackets_outside_strings(seed):
    from explorer.dataset.coco_stream import _Scanner

    rng = np.random.default_rng(seed)
    # brackets outside strings, and strings of escaped quotes, escaped backslashes (runs of them) and brackets
    outside, inside = [b"[", b"]", b"{", b"}", b"a", b" "], [b"\\\\", b'\\"', b"[", b"]", b"{", b"}", b"a"]
    pieces = []
    for _ in range(600):
        if rng.uniform() < 0.3:
            pieces += [b'"', *(inside[i] for i in rng.integers(0, len(inside), rng.integers(0, 8))), b'"']
        else:
            pieces.append(outside[rng.integers(0, len(outside))])
    text = b"".join(pieces)
    assert b"\\\\\\\\" in text and b'\\\\\\"' in text  # runs of 4 backslashes, and of 3 before a quote
    expected = _brackets_by_hand(text)
    for block in (1, 2, 3, 7, 64, 3000):
        scanner, found = _Scanner(), []
        for start in range(0, len(text), block):
            pos, depth = scanner.structure(np.frombuffer(text[start : start + block], np.uint8))
            found += list(zip((pos + start).tolist(), depth.tolist(), strict=True))
        assert found == expected, block


# ---------------------------------------------------------------------------------------------------------------
# The memory budget, and files read in blocks by load_coco
# ---------------------------------------------------------------------------------------------------------------


def test_a_file_over_the_memory_budget_is_refused_up_front_with_its_size_and_the_limit(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(json.dumps(coco_dict(annotations=_anns({}))).encode())
    size = path.stat().st_size
    assert load_coco(path, memory_budget=int(size * 2.3)).num_annotations == 1
    with pytest.raises(CocoFormatError, match=r"big.json is .* MB: loading it needs about .* budget of .* MB"):
        load_coco(path, memory_budget=size * 2)


def test_a_file_for_the_dict_reader_is_refused_when_its_dicts_would_not_fit(tmp_path):
    path = tmp_path / "odd.json"
    path.write_bytes(json.dumps(coco_dict(images=[image_rec("a")])).encode())  # a string id: dict reader
    size = path.stat().st_size
    assert load_coco(path, memory_budget=size * 9).num_images == 1
    with pytest.raises(CocoFormatError, match=r"odd.json is .* needs about"):
        load_coco(path, memory_budget=size * 3)


def test_large_files_are_read_in_blocks_with_the_same_result(tmp_path, monkeypatch):
    import explorer.dataset.coco as coco_module

    coco = _random_coco(np.random.default_rng(5))
    path = tmp_path / "a.json"
    path.write_bytes(json.dumps(coco).encode())
    monkeypatch.setattr(coco_module, "STREAM_MIN_BYTES", 10)
    calls = []
    monkeypatch.setattr(coco_module, "stream_columns", lambda p: calls.append(p) or decode_columns(p.read_bytes()))
    assert_same_dataset(load_coco(path), load_coco(coco, name="a.json"))
    assert calls == [path]
    with pytest.raises(CocoFormatError, match=r"a.json is .* MB: loading it needs about"):
        load_coco(path, memory_budget=10)


def test_a_large_file_the_columnar_reader_cannot_read_is_refused_not_read_whole(tmp_path, monkeypatch):
    import explorer.dataset.coco as coco_module

    path = tmp_path / "odd.json"
    path.write_bytes(json.dumps(coco_dict(images=[image_rec("a")])).encode())
    monkeypatch.setattr(coco_module, "STREAM_MIN_BYTES", 10)
    with pytest.raises(CocoFormatError, match=r"does not fit the columnar reader .* too large for the dict reader"):
        load_coco(path)
