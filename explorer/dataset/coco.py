"""COCO instances loading and validation: problems are reported as a table, not as crashes.

:func:`load_coco` reads a COCO "instances" JSON (bytes or a path), keeps only what dataset diagnostics need
(images, categories and per-annotation id / image id / category id / bbox / iscrowd / area) and checks every
record. A record that cannot be used is dropped and reported; a record that can be repaired (a box that sticks out
of its image, a missing ``iscrowd``) is repaired and reported. Only input that is not a COCO dict at all (not JSON,
JSON that Python cannot read: nested hundreds of levels deep or with a number of more than 4,300 digits; not an
object, no ``images`` list) raises :class:`CocoFormatError`, a ``ValueError``. Values that do not fit the arrays are
per-record problems: ids beyond int64, numbers beyond float64 (``1e400``, ``10**400``), image sides that are not
whole numbers in 1..:data:`MAX_IMAGE_SIDE`, boxes beyond float32.

Boxes follow the torchvision detection references (``coco_utils.ConvertCocoPolysToMask``): xywh -> xyxy in
float32, clamped to the image, kept when ``x2 > x1`` and ``y2 > y1``. Crowd boxes (``iscrowd = 1``) are kept in
the arrays with their flag, counted per image, and excluded from matching by the scan, as torchvision and
detectron2 do. Original category ids and names are kept; pycocotools stays the reference reader (the tests check
that the kept boxes agree with ``pycocotools.coco.COCO``).

Loading is lean: polygon segmentations, which make up most of a COCO file (about 300 of the 448 MB of
``instances_train2017.json``), are cut out of the raw bytes with one regular expression before the JSON is
parsed, so the Python objects of the polygons are never built.

Example:
    >>> coco = {"images": [{"id": 1, "width": 64, "height": 48}], "categories": [{"id": 3, "name": "cat"}],
    ...         "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [60, 10, 10, 5]}]}
    >>> ds = load_coco(coco)
    >>> ds.boxes_xyxy.tolist(), ds.problems["kind"].tolist()
    ([[60.0, 10.0, 64.0, 15.0]], ['box_outside_image', 'missing_iscrowd', 'missing_area'])
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
PROBLEM_COLUMNS: tuple[str, ...] = ("severity", "kind", "image_id", "annotation_id", "message")

#: COCO's area ranges (``COCOeval``): small < 32², medium < 96², large otherwise, in original-image pixels².
AREA_SMALL = 32.0**2
AREA_MEDIUM = 96.0**2
SIZE_BUCKETS: tuple[str, ...] = ("small", "medium", "large")

#: Default cap on the size of an annotation file (bytes).
DEFAULT_MAX_BYTES = 2_000_000_000

#: Largest image width or height (px) accepted; a larger image is dropped with an ``image_size`` problem. The
#: widest real datasets (aerial mosaics, whole-slide tiles) stay under it; a larger value is a corrupt record.
MAX_IMAGE_SIDE = 100_000

#: Range of the int64 arrays that hold ids and flags; a JSON integer outside it is a per-record problem.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# A polygon segmentation value: a list of lists of plain numbers. Only that shape is cut out; anything else (RLE
# dicts, odd formatting) stays and is parsed normally, so a miss costs speed, never correctness.
_POLYGON_SEGMENTATION = re.compile(rb'"segmentation"\s*:\s*\[\s*\[[^\[\]{}"]*\](?:\s*,\s*\[[^\[\]{}"]*\])*\s*\]')

_MISSING = object()


class CocoFormatError(ValueError):
    """The input is not a COCO dict at all (not JSON, not an object, no ``images`` list).

    Attributes:
        line, column: 1-based position of a JSON syntax error, else ``None``.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass
class CocoDataset:
    """The usable part of a COCO instances file, as arrays, plus the problems found while reading it.

    Images are those with a valid id, width and height, in file order. Annotations are the valid ones (crowd and
    non-crowd), grouped by image (image order, then file order within an image): image ``i`` owns rows
    ``ann_offsets[i]:ann_offsets[i + 1]``.

    Attributes:
        image_ids: (I,) image ids (int64, or object when the file uses string ids).
        file_names: (I,) list of ``file_name`` values ("" when absent).
        heights, widths: (I,) int64 original image size.
        category_ids: (C,) int64 original category ids, file order; ``category_names`` (C,) list of str.
        ann_ids: (B,) annotation ids (int64, or object for string ids).
        ann_image: (B,) int64 index into the image arrays.
        ann_category: (B,) int64 original category id.
        boxes_xyxy: (B, 4) float32 xyxy at the original scale, clamped to the image.
        areas: (B,) float64 the ``area`` field (segment area, what COCOeval's size ranges use), else the box area.
        iscrowd: (B,) bool.
        ann_offsets: (I + 1,) int64.
        problems: DataFrame with :data:`PROBLEM_COLUMNS`.
        name: where the data came from (file name), for display.
    """

    image_ids: np.ndarray
    file_names: list[str]
    heights: np.ndarray
    widths: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    ann_ids: np.ndarray
    ann_image: np.ndarray
    ann_category: np.ndarray
    boxes_xyxy: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    ann_offsets: np.ndarray
    problems: pd.DataFrame
    name: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.heights)

    @property
    def num_annotations(self) -> int:
        return len(self.ann_ids)

    def annotations_of(self, index: int) -> slice:
        """Rows of image ``index`` (0-based position, not id) in the annotation arrays."""
        return slice(int(self.ann_offsets[index]), int(self.ann_offsets[index + 1]))

    def category_name(self, category_id: int) -> str:
        lookup = dict(zip(self.category_ids.tolist(), self.category_names, strict=True))
        return lookup.get(int(category_id), f"id {category_id}")

    def size_bucket(self) -> np.ndarray:
        """(B,) int8 COCO size bucket of every annotation: 0 small, 1 medium, 2 large (by ``areas``)."""
        return np.digitize(self.areas, [AREA_SMALL, AREA_MEDIUM]).astype(np.int8)

    def images_frame(self) -> pd.DataFrame:
        """One row per image: image_id, file_name, height, width, boxes, crowd boxes."""
        per_image = np.diff(self.ann_offsets)
        crowd = np.bincount(self.ann_image[self.iscrowd], minlength=self.num_images)
        return pd.DataFrame(
            {
                "image_id": self.image_ids,
                "file_name": self.file_names,
                "height": self.heights,
                "width": self.widths,
                "boxes": per_image - crowd,
                "crowd_boxes": crowd,
            }
        )

    def annotations_frame(self) -> pd.DataFrame:
        """One row per kept annotation: ids, category, xyxy box, area, iscrowd, size bucket."""
        b = self.boxes_xyxy
        names = dict(zip(self.category_ids.tolist(), self.category_names, strict=True))
        return pd.DataFrame(
            {
                "annotation_id": self.ann_ids,
                "image_id": self.image_ids[self.ann_image] if self.num_images else self.image_ids[:0],
                "category_id": self.ann_category,
                "category": [names.get(c, "") for c in self.ann_category.tolist()],
                "x1": b[:, 0],
                "y1": b[:, 1],
                "x2": b[:, 2],
                "y2": b[:, 3],
                "area": self.areas,
                "iscrowd": self.iscrowd,
                "size": np.asarray(SIZE_BUCKETS, dtype=object)[self.size_bucket()],
            }
        )

    def problem_summary(self) -> pd.DataFrame:
        """Problems counted by severity and kind (columns severity, kind, count), errors first."""
        if self.problems.empty:
            return pd.DataFrame({"severity": [], "kind": [], "count": []})
        out = self.problems.groupby(["severity", "kind"], sort=False).size().reset_index(name="count")
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return out.sort_values(["severity", "count"], key=lambda s: s.map(order) if s.name == "severity" else -s)


class _Problems:
    """Accumulates problem rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Any, Any, str]] = []

    def add(self, severity: str, kind: str, message: str, *, image_id: Any = None, annotation_id: Any = None) -> None:
        self.rows.append((severity, kind, _id_or_none(image_id), _id_or_none(annotation_id), message))

    def frame(self) -> pd.DataFrame:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(PROBLEM_COLUMNS)
        data: dict[str, Any] = {}
        for col, values in zip(PROBLEM_COLUMNS, columns, strict=True):
            if col in ("image_id", "annotation_id"):
                if all(v is None or type(v) is int for v in values):
                    data[col] = pd.array(list(values), dtype="Int64")
                else:
                    data[col] = pd.array([None if v is None else str(v) for v in values], dtype="string")
            elif col == "severity":
                data[col] = pd.Categorical(list(values), categories=list(SEVERITIES))
            else:
                data[col] = pd.array(list(values), dtype=object)
        return pd.DataFrame(data)


def _id_or_none(value: Any) -> Any:
    if value is None or value is _MISSING:
        return None
    if _is_int(value) or type(value) is str:
        return value
    return _short(value, 40)


def _short(value: Any, limit: int = 60) -> str:
    """A value as JSON text for a message, cut to ``limit`` characters (safe on deep or huge values)."""
    if value is _MISSING:
        return "missing"
    try:
        text = json.dumps(value, default=repr) if _jsonable(value) else repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    except ValueError:  # an int over Python's digit limit (only from a dict built in Python)
        text = f"an integer of {value.bit_length():,} bits" if type(value) is int else type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, list, dict, bool)) or value is None


def _is_int(value: Any) -> bool:
    """An int that fits in int64 (a JSON integer such as 2**70 does not, and is a per-record problem)."""
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _all_int64(values: list[Any]) -> bool:
    """Every value is an int that fits in int64 (fast: C-level type set, min and max)."""
    return set(map(type, values)) <= {int} and (not values or (min(values) >= _INT64_MIN and max(values) <= _INT64_MAX))


def _is_id(value: Any) -> bool:
    return _is_int(value) or (type(value) is str and value != "")


def _id_text(value: Any) -> str:
    """Why an id is not valid: missing, of the wrong type, or an integer outside int64."""
    if type(value) is int:
        return f"{_short(value)} does not fit in 64 bits"
    return _short(value)


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def as_float(value: Any) -> float:
    """A JSON number as float64: NaN when not a number, infinity when it overflows float64 (10**400)."""
    if not _is_number(value):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def image_side_problem(value: Any) -> str | None:
    """Why an image width or height from JSON is unusable (None when it is a whole number in 1..MAX_IMAGE_SIDE).

    Example:
        >>> image_side_problem(640), image_side_problem(float("nan")), image_side_problem(10**9)
        (None, 'NaN is not a finite number', '1000000000 is over the 100,000 px limit')
    """
    if not _is_number(value):
        return _short(value) if value is _MISSING else f"{_short(value)} is not a number"
    if type(value) is float and not math.isfinite(value):
        return f"{_short(value)} is not a finite number"
    if type(value) is float and not value.is_integer():
        return f"{_short(value)} is not a whole number"
    if value < 1:
        return f"{_short(value)} is not positive"
    if value > MAX_IMAGE_SIDE:
        return f"{_short(value)} is over the {MAX_IMAGE_SIDE:,} px limit"
    return None


def _mb(n: float) -> str:
    """A byte count in MB, with a decimal below 10 MB so that small limits do not read as 0."""
    mb = n / 1e6
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2g} MB"


#: Leading bytes of files that people upload by mistake instead of a COCO JSON.
_MAGIC: dict[bytes, str] = {
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "a gzip file (decompress it first)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"PAR1": "a Parquet file",
}


def _read_bytes(source: bytes | bytearray | memoryview | str | os.PathLike, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "uploaded JSON"
    else:
        path = Path(source)
        if path.is_dir():
            raise CocoFormatError(f"{path} is a folder, not an annotation file")
        if not path.is_file():
            raise CocoFormatError(f"annotation file not found: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise CocoFormatError(f"annotation file {path.name} is {_mb(size)}, over the {_mb(max_bytes)} limit")
        data = path.read_bytes()
        name = path.name
    if len(data) > max_bytes:
        raise CocoFormatError(f"annotation data is {_mb(len(data))}, over the {_mb(max_bytes)} limit")
    return data, name


def _json_error(err: json.JSONDecodeError) -> CocoFormatError:
    return CocoFormatError(
        f"invalid JSON at line {err.lineno}, column {err.colno} (character {err.pos}): {err.msg}",
        line=err.lineno,
        column=err.colno,
    )


def parse_json_lean(data: bytes) -> Any:
    """Parse COCO JSON bytes, replacing every polygon ``segmentation`` by an empty list before parsing.

    Args:
        data: the file's bytes (UTF-8, UTF-16 or UTF-32, as ``json.loads`` accepts).

    Returns:
        The parsed object; polygon segmentations are ``[]``, RLE segmentations are kept.

    Raises:
        CocoFormatError: not valid JSON (the message gives the line and column in the original bytes), nested
            too deeply for Python's parser, or holding an integer of more than 4,300 digits.
    """
    head = data[:4096].lstrip(b" \t\r\n\xef\xbb\xbf")
    if not head:
        raise CocoFormatError("the annotation file is empty")
    utf8 = not (data[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(data) > 1 and data[1] == 0) or data[0] == 0)
    if utf8 and head[:1] not in (b"{", b"["):
        kind = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), None)
        if kind is not None:
            raise CocoFormatError(f"not a COCO JSON file: this is {kind}")
        text = head[:20].decode("utf-8", "replace")
        snippet = "".join(c if c.isprintable() else "?" for c in text)
        raise CocoFormatError(f"not a COCO JSON file: it starts with {snippet!r}, not with '{{'")
    lean = _POLYGON_SEGMENTATION.sub(b'"segmentation":[]', data) if utf8 else data
    try:
        return _loads(lean)
    except UnicodeDecodeError as err:
        raise CocoFormatError(f"not a UTF-8 JSON file: {err.reason} at byte {err.start}") from None
    except json.JSONDecodeError as err:
        if lean is data:
            raise _json_error(err) from None
    del lean
    # Report the position in the original text: parse it again (only on failure).
    try:
        return _loads(data)
    except json.JSONDecodeError as err:
        raise _json_error(err) from None


def _loads(text: bytes) -> Any:
    """``json.loads``, with the failures that are not syntax errors turned into :class:`CocoFormatError`.

    Python's parser recurses once per nesting level, so ``[[[[...]]]]`` thousands deep raises ``RecursionError``
    (the parse is abandoned as a whole; nothing of it is kept); an integer of more than 4,300 digits raises
    Python's own ``ValueError`` about ``sys.set_int_max_str_digits``.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise CocoFormatError(
            "the JSON is nested too deeply to read (hundreds of levels of [ or {; a COCO file needs 5)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as err:
        if "integer string conversion" not in str(err):
            raise
        raise CocoFormatError(f"a number in the JSON has more than {sys.get_int_max_str_digits():,} digits") from None


def load_coco(
    source: bytes | bytearray | memoryview | str | os.PathLike | dict,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> CocoDataset:
    """Load and validate a COCO instances file.

    Args:
        source: the file's bytes, a path to it, or an already-parsed COCO dict.
        max_bytes: refuse larger files (``CocoFormatError``).
        name: display name (default: the file name).

    Returns:
        A :class:`CocoDataset` with the usable records and a problems table (severity error = record dropped,
        warning = kept but repaired or suspicious, info = noted).

    Raises:
        CocoFormatError: (a ``ValueError``) not JSON, not a JSON object, or no ``images`` list.
    """
    if isinstance(source, dict):
        data, default_name = source, "COCO dict"
    else:
        raw, default_name = _read_bytes(source, max_bytes)
        data = parse_json_lean(raw)
        del raw
    if not isinstance(data, dict):
        raise CocoFormatError(
            f"not a COCO instances file: the top level is a JSON {type(data).__name__}, not an object"
        )
    if "images" not in data:
        keys = ", ".join(sorted(map(str, data)))[:120] or "none"
        raise CocoFormatError(f"not a COCO instances file: no 'images' key (keys found: {keys})")
    if not isinstance(data["images"], list):
        raise CocoFormatError(f"not a COCO instances file: 'images' is a {type(data['images']).__name__}, not a list")
    return _build(data, name or default_name)


def _build(data: dict, name: str) -> CocoDataset:
    problems = _Problems()
    images = _parse_images(data["images"], problems)
    cats = _parse_categories(data, problems)
    anns = data.get("annotations", _MISSING)
    if anns is _MISSING:
        problems.add("warning", "missing_key", "no 'annotations' list: every image is treated as empty")
        anns = []
    elif not isinstance(anns, list):
        problems.add("error", "missing_key", f"'annotations' is a {type(anns).__name__}, not a list; ignored")
        anns = []
    return _parse_annotations(anns, images, cats, problems, name)


@dataclass
class _Images:
    ids: list[Any]
    file_names: list[str]
    heights: np.ndarray
    widths: np.ndarray
    index: dict[Any, int]  # valid image id -> position
    invalid: dict[Any, str]  # id of an image dropped for its size -> reason


def _parse_images(records: list, problems: _Problems) -> _Images:
    ids: list[Any] = []
    names: list[str] = []
    hs: list[int] = []
    ws: list[int] = []
    index: dict[Any, int] = {}
    invalid: dict[Any, str] = {}
    for k, rec in enumerate(records):
        if type(rec) is not dict:
            problems.add("error", "invalid_record", f"images[{k}] is a {type(rec).__name__}, not an object; dropped")
            continue
        image_id = rec.get("id", _MISSING)
        if not _is_id(image_id):
            problems.add("error", "missing_key", f"images[{k}] has no valid 'id' ({_id_text(image_id)}); dropped")
            continue
        if image_id in index or image_id in invalid:
            problems.add(
                "error",
                "duplicate_id",
                f"image id {image_id!r} appears again at images[{k}]; the first is kept",
                image_id=image_id,
            )
            continue
        h, w = rec.get("height", _MISSING), rec.get("width", _MISSING)
        bad = [f"{key} {why}" for key, v in (("width", w), ("height", h)) if (why := image_side_problem(v)) is not None]
        if bad:
            invalid[image_id] = ", ".join(bad)
            continue
        index[image_id] = len(ids)
        ids.append(image_id)
        fname = rec.get("file_name", "")
        names.append(fname if type(fname) is str else "")
        hs.append(int(h))
        ws.append(int(w))
    return _Images(ids, names, np.asarray(hs, np.int64), np.asarray(ws, np.int64), index, invalid)


def _parse_categories(data: dict, problems: _Problems) -> dict[int, str]:
    records = data.get("categories", _MISSING)
    cats: dict[int, str] = {}
    if records is _MISSING or not isinstance(records, list):
        what = "no 'categories' list" if records is _MISSING else f"'categories' is a {type(records).__name__}"
        problems.add("warning", "missing_key", f"{what}: category ids are taken from the annotations, unnamed")
        return {}
    for k, rec in enumerate(records):
        if type(rec) is not dict or not _is_int(rec.get("id")):
            what = _id_text(rec.get("id", _MISSING)) if type(rec) is dict else _short(rec)
            problems.add("error", "invalid_record", f"categories[{k}] has no integer 'id' ({what}); dropped")
            continue
        cid = rec["id"]
        if cid in cats:
            problems.add("error", "duplicate_id", f"category id {cid} appears again at categories[{k}]; first kept")
            continue
        cname = rec.get("name", _MISSING)
        if type(cname) is not str or not cname:
            problems.add("warning", "missing_key", f"category {cid} has no 'name'; shown as 'id {cid}'")
            cname = f"id {cid}"
        cats[cid] = cname
    if not records:
        problems.add(
            "warning", "missing_key", "the 'categories' list is empty: category ids are taken from the annotations"
        )
    return cats


def _column(anns: list[dict], key: str) -> list[Any]:
    return [a.get(key, _MISSING) for a in anns]


def _parse_annotations(
    records: list, images: _Images, cats: dict[int, str], problems: _Problems, name: str
) -> CocoDataset:
    n = len(records)
    anns: list[dict] = records
    if not all(type(a) is dict for a in records):
        anns = []
        for k, a in enumerate(records):
            if type(a) is dict:
                anns.append(a)
            else:
                problems.add(
                    "error", "invalid_record", f"annotations[{k}] is a {type(a).__name__}, not an object; dropped"
                )
        n = len(anns)
    keep = np.ones(n, dtype=bool)

    def drop(rows: np.ndarray | list[int], kind: str, message: Any, severity: str = "error") -> None:
        for k in np.asarray(rows, dtype=np.int64).tolist():
            if not keep[k]:
                continue
            keep[k] = False
            msg = message(k) if callable(message) else message
            problems.add(severity, kind, msg, image_id=image_col[k], annotation_id=ids[k])

    # --- ids -----------------------------------------------------------------------------------------------
    ids = _column(anns, "id")
    image_col = _column(anns, "image_id")
    if not _all_int64(ids):
        bad = [k for k, v in enumerate(ids) if not _is_id(v)]
        drop(bad, "missing_key", lambda k: f"annotation has no valid 'id' ({_id_text(ids[k])}); dropped")
    # --- image ids -----------------------------------------------------------------------------------------
    index_get = images.index.get
    if set(map(type, image_col)) <= {int, str}:
        image_idx = np.fromiter((index_get(v, -1) for v in image_col), np.int64, count=n)
    else:
        image_idx = np.fromiter((index_get(v, -1) if _hashable(v) else -1 for v in image_col), np.int64, count=n)
    missing_img = np.flatnonzero(image_idx < 0)
    if len(missing_img):
        per_invalid: Counter = Counter()
        bad_rows = []
        for k in missing_img.tolist():
            v = image_col[k]
            if _hashable(v) and v in images.invalid:
                per_invalid[v] += 1
                keep[k] = False
            else:
                bad_rows.append(k)
        drop(
            bad_rows,
            "missing_image",
            lambda k: (
                "annotation has no 'image_id'; dropped"
                if image_col[k] is _MISSING
                else f"annotation refers to image id {_short(image_col[k])}, which is not in 'images'; dropped"
            ),
        )
    else:
        per_invalid = Counter()
    for image_id, reason in images.invalid.items():
        count = per_invalid.get(image_id, 0)
        problems.add(
            "error",
            "image_size",
            f"image has no valid width/height ({reason}); it and its {count} annotation(s) are not scanned",
            image_id=image_id,
        )
    # --- categories ----------------------------------------------------------------------------------------
    cat_col = _column(anns, "category_id")
    if not cats:  # no categories list: take them from the annotations
        for v in cat_col:
            if _is_int(v) and v not in cats:
                cats[v] = f"id {v}"
        cats = dict(sorted(cats.items()))
    if _all_int64(cat_col):
        cat_arr = np.asarray(cat_col, dtype=np.int64) if n else np.zeros(0, np.int64)
    else:
        cat_arr = np.asarray([v if _is_int(v) else -(2**62) for v in cat_col], dtype=np.int64)
    known = np.isin(cat_arr, np.fromiter(cats, np.int64, count=len(cats)))
    drop(
        np.flatnonzero(~known),
        "unknown_category",
        lambda k: (
            "annotation has no 'category_id'; dropped"
            if cat_col[k] is _MISSING
            else f"category_id {_short(cat_col[k])} is not in 'categories'; dropped"
        ),
    )
    # --- bbox ----------------------------------------------------------------------------------------------
    bboxes = _column(anns, "bbox")
    boxes = _bbox_array(bboxes, drop)
    finite = np.isfinite(boxes).all(axis=1)
    drop(
        np.flatnonzero(~finite & keep),
        "non_finite",
        lambda k: f"bbox {_short(bboxes[k])} has NaN or infinite values (or numbers beyond float64); dropped",
    )
    boxes[~finite] = 0.0
    degenerate = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    drop(
        np.flatnonzero(degenerate & keep),
        "empty_box",
        lambda k: f"bbox {_short(bboxes[k])} has width or height <= 0; dropped",
    )
    # xywh -> xyxy in float32 and clamp, as torchvision's ConvertCocoPolysToMask.
    with np.errstate(over="ignore", invalid="ignore"):
        b32 = boxes.astype(np.float32)
        b32[:, 2:] += b32[:, :2]
    too_big = ~np.isfinite(b32).all(axis=1)
    drop(
        np.flatnonzero(too_big & keep),
        "non_finite",
        lambda k: f"bbox {_short(bboxes[k])} has values beyond the 32-bit float range; dropped",
    )
    b32[too_big] = 0.0
    safe_idx = np.where(image_idx >= 0, image_idx, 0)
    w_img = images.widths[safe_idx].astype(np.float32) if len(images.ids) else np.zeros(n, np.float32)
    h_img = images.heights[safe_idx].astype(np.float32) if len(images.ids) else np.zeros(n, np.float32)
    clamped = b32.copy()
    np.clip(clamped[:, 0], 0, w_img, out=clamped[:, 0])
    np.clip(clamped[:, 2], 0, w_img, out=clamped[:, 2])
    np.clip(clamped[:, 1], 0, h_img, out=clamped[:, 1])
    np.clip(clamped[:, 3], 0, h_img, out=clamped[:, 3])
    outside = (clamped != b32).any(axis=1) & keep
    empty_after = (clamped[:, 2] <= clamped[:, 0]) | (clamped[:, 3] <= clamped[:, 1])
    drop(
        np.flatnonzero(empty_after & keep),
        "box_outside_image",
        lambda k: (
            f"bbox {_short(bboxes[k])} lies outside its {int(w_img[k])}x{int(h_img[k])} image "
            "(empty after clamping); dropped"
        ),
    )
    for k in np.flatnonzero(outside & keep).tolist():
        over = float(max(-b32[k, 0], -b32[k, 1], b32[k, 2] - w_img[k], b32[k, 3] - h_img[k]))
        problems.add(
            "warning",
            "box_outside_image",
            f"bbox {_short(bboxes[k])} extends {over:.3g} px outside its {int(w_img[k])}x{int(h_img[k])} image; "
            "clamped",
            image_id=image_col[k],
            annotation_id=ids[k],
        )
    # --- iscrowd, area --------------------------------------------------------------------------------------
    crowd_col = _column(anns, "iscrowd")
    if _all_int64(crowd_col):
        crowd_arr = np.asarray(crowd_col, dtype=np.int64) if n else np.zeros(0, np.int64)
        odd = np.flatnonzero((crowd_arr != 0) & (crowd_arr != 1) & keep)
    else:
        crowd_arr = np.zeros(n, np.int64)
        odd_list = []
        missing = 0
        for k, v in enumerate(crowd_col):
            if v is _MISSING:
                missing += keep[k]
            elif type(v) is int or type(v) is bool:
                crowd_arr[k] = v != 0  # not int(v): 2**70 does not fit
                if v not in (0, 1):
                    odd_list.append(k)
            else:
                crowd_arr[k] = 0
                odd_list.append(k)
        odd = np.asarray([k for k in odd_list if keep[k]], dtype=np.int64)
        if missing:
            problems.add("warning", "missing_iscrowd", f"{missing} annotation(s) have no 'iscrowd'; taken as 0")
    for k in odd.tolist():
        problems.add(
            "warning",
            "invalid_iscrowd",
            f"iscrowd {_short(crowd_col[k])} is not 0 or 1; taken as {1 if crowd_arr[k] else 0}",
            image_id=image_col[k],
            annotation_id=ids[k],
        )
    iscrowd = crowd_arr != 0
    area_col = _column(anns, "area")
    box_area = (boxes[:, 2] * boxes[:, 3]).astype(np.float64)
    try:
        if not set(map(type, area_col)) <= {int, float}:
            raise OverflowError  # not all numbers: the per-value path below
        areas = np.asarray(area_col, dtype=np.float64) if n else np.zeros(0)
    except OverflowError:  # an integer beyond float64 (10**400)
        areas = np.fromiter(map(as_float, area_col), np.float64, count=n)
    bad_area = ~(np.isfinite(areas) & (areas >= 0))
    if (bad_area & keep).any():
        cnt = int((bad_area & keep).sum())
        problems.add(
            "info", "missing_area", f"{cnt} annotation(s) have no valid 'area'; the bbox area is used for their size"
        )
    areas = np.where(bad_area, box_area, areas)
    # --- duplicates ----------------------------------------------------------------------------------------
    kept_rows = np.flatnonzero(keep)
    id_values = [ids[k] for k in kept_rows.tolist()]
    if len(set(id_values)) != len(id_values):
        seen: set = set()
        for k, v in zip(kept_rows.tolist(), id_values, strict=True):
            if v in seen:
                problems.add(
                    "warning",
                    "duplicate_id",
                    f"annotation id {v!r} is used more than once; kept",
                    image_id=image_col[k],
                    annotation_id=v,
                )
            seen.add(v)
    crowd_kept = int(iscrowd[kept_rows].sum())
    if crowd_kept:
        problems.add(
            "info",
            "crowd",
            f"{crowd_kept} crowd annotation(s) (iscrowd=1) are excluded from matching, as in torchvision and "
            "detectron2",
        )
    # --- assemble, grouped by image ------------------------------------------------------------------------
    order = kept_rows[np.argsort(image_idx[kept_rows], kind="stable")]
    ann_image = image_idx[order]
    n_images = len(images.ids)
    offsets = np.zeros(n_images + 1, np.int64)
    np.cumsum(np.bincount(ann_image, minlength=n_images), out=offsets[1:])
    ann_ids = _id_array([ids[k] for k in order.tolist()])
    cat_ids = np.fromiter(cats, np.int64, count=len(cats))
    df = problems.frame()
    counts = {
        "images_in_file": len(images.ids) + len(images.invalid),
        "annotations_in_file": len(records),
        "annotations_kept": len(order),
        "crowd_kept": crowd_kept,
        "errors": int((df["severity"] == "error").sum()),
        "warnings": int((df["severity"] == "warning").sum()),
    }
    return CocoDataset(
        image_ids=_id_array(images.ids),
        file_names=images.file_names,
        heights=images.heights,
        widths=images.widths,
        category_ids=cat_ids,
        category_names=[cats[c] for c in cat_ids.tolist()],
        ann_ids=ann_ids,
        ann_image=ann_image.astype(np.int64),
        ann_category=cat_arr[order],
        boxes_xyxy=np.ascontiguousarray(clamped[order]),
        areas=areas[order],
        iscrowd=iscrowd[order],
        ann_offsets=offsets,
        problems=df,
        name=name,
        counts=counts,
    )


def _hashable(value: Any) -> bool:
    return type(value) in (int, str)


def _id_array(values: list[Any]) -> np.ndarray:
    if set(map(type, values)) <= {int}:
        return np.asarray(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    return np.asarray(values, dtype=object)


def _bbox_array(bboxes: list[Any], drop: Any) -> np.ndarray:
    """(N, 4) float64 xywh; malformed entries are dropped (reported) and left as NaN."""
    n = len(bboxes)
    fast = set(map(type, bboxes)) <= {list} and set(map(len, bboxes)) <= {4}
    if fast:
        fast = {type(v) for b in bboxes for v in b} <= {int, float}
    if fast:
        try:
            return np.asarray(bboxes, dtype=np.float64).reshape(n, 4)
        except OverflowError:  # an integer beyond float64 (10**400): the per-value path makes it infinite
            pass
    out = np.full((n, 4), np.nan)
    bad = []
    for k, b in enumerate(bboxes):
        if type(b) is list and len(b) == 4 and all(_is_number(v) for v in b):
            out[k] = [as_float(v) for v in b]
        else:
            bad.append(k)
    drop(
        bad,
        "invalid_bbox",
        lambda k: (
            "annotation has no 'bbox'; dropped"
            if bboxes[k] is _MISSING
            else f"bbox {_short(bboxes[k])} is not a list of 4 numbers [x, y, w, h]; dropped"
        ),
    )
    return out
