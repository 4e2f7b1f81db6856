"""COCO JSON decoded straight into columns: typed msgspec records, no Python dict per record.

:func:`decode_columns` decodes a COCO instances file with `msgspec <https://jcristharif.com/msgspec/>`_ into
``msgspec.Struct`` records that declare only the fields the reader needs (image id / width / height / file name,
category id / name, annotation id / image id / category id / bbox / iscrowd / area); every other field, the polygon
segmentations first of all, is skipped by the decoder without building a Python object. The records become numpy
columns (:class:`CocoColumns`), which :func:`parse_annotation_columns` checks with the same functions as the dict
path (:mod:`explorer.dataset.coco_annotations`), in the same order, with the same messages.
``bench/bench_coco_parse.py`` compares this with the standard library, orjson and the lean parse.

The typed schema is strict: an id that is not an integer, a bbox that is not 4 numbers, a ``null`` name, a bool
flag, a ``NaN``... anything the schema does not describe exactly makes :func:`decode_columns` return ``None``, and
the caller reads the file with the dict path (:func:`explorer.dataset.coco_json.parse_json_lean`), which reports
every odd record as before. So the columnar path only ever reads files for which it gives the same dataset; the
checks of what msgspec accepts and Python's ``json`` does not (invalid UTF-8 in a skipped string, an integer of
more than 4,300 digits) send those files to the dict path too.

Example:
    >>> cols = decode_columns(b'{"images": [{"id": 4, "width": 64, "height": 48}], "annotations": [{"id": 1, '
    ...                       b'"image_id": 4, "category_id": 2, "bbox": [1, 2, 3, 4], "segmentation": [[]]}]}')
    >>> cols.image_ids.tolist(), cols.annotations.xywh.tolist(), cols.annotations.iscrowd_missing.tolist()
    ([4], [[1.0, 2.0, 3.0, 4.0]], [True])
    >>> decode_columns(b'{"images": [{"id": "a", "width": 64, "height": 48}]}') is None  # a string id: dict path
    True
"""

from __future__ import annotations

import codecs
import gc
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from explorer.dataset.coco_annotations import (
    _AnnotationRows,
    _clamped_xyxy,
    _drop_unknown_images,
    check_xywh,
    report_areas,
    report_duplicate_id,
    report_iscrowd,
)
from explorer.dataset.coco_problems import Problems, short
from explorer.dataset.coco_records import Annotations, ImageRecords, group_by_image
from explorer.dataset.memory import release_free_memory

_Number = int | float
_UNSET = msgspec.UNSET


class _Image(msgspec.Struct, gc=False):
    id: int
    width: int
    height: int
    file_name: str = ""


class _Category(msgspec.Struct, gc=False):
    id: int
    name: str | msgspec.UnsetType = _UNSET


class _Annotation(msgspec.Struct, gc=False):
    id: int
    image_id: int
    category_id: int
    bbox: tuple[_Number, _Number, _Number, _Number]
    iscrowd: int | msgspec.UnsetType = _UNSET
    area: _Number | msgspec.UnsetType = _UNSET


class _Coco(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Annotation] | msgspec.UnsetType = _UNSET
    categories: list[_Category] | msgspec.UnsetType = _UNSET


_DECODER = msgspec.json.Decoder(_Coco)

#: Python's ``json`` refuses integers of more than this many digits (``sys.get_int_max_str_digits``); msgspec
#: skips them. Any run of digits half this long sends the file to the dict path, which decides.
_DIGIT_STRIDE = 2150
_DIGIT_RUN = re.compile(rb"[0-9]*")


@dataclass
class CocoColumns:
    """A COCO file as columns.

    Attributes:
        image_ids, widths, heights: (I,) int64, file order; file_names: (I,) list of str.
        categories: the ``categories`` records as dicts (``id``, ``name`` when present), or None when the key is
            absent (categories are few: they go through :func:`~explorer.dataset.coco_records.parse_categories`).
        annotations: the annotation columns, or None when the file has no ``annotations`` key.
    """

    image_ids: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    file_names: list[str]
    categories: list[dict[str, Any]] | None
    annotations: AnnotationColumns | None


def decode_columns(raw: bytes) -> CocoColumns | None:
    """The columns of COCO JSON ``raw`` (UTF-8), or None when the file does not fit the typed schema exactly.

    None also for what msgspec would read but Python's ``json`` (the dict path) would refuse: invalid UTF-8 and
    integers of more than 4,300 digits anywhere, ids beyond int64, numbers beyond float64.
    """
    if not _python_json_would_read(raw):
        return None
    enabled = gc.isenabled()
    gc.disable()  # millions of small records: the collector would walk them again and again for nothing
    try:
        coco = _DECODER.decode(raw)
        return _columns(coco)
    except (msgspec.DecodeError, RecursionError, OverflowError):
        return None
    finally:
        if enabled:
            gc.enable()


def _python_json_would_read(raw: bytes) -> bool:
    """False for bytes that msgspec decodes but ``json.loads`` refuses: invalid UTF-8, a run of digits that may
    be an integer over Python's 4,300-digit limit."""
    if not raw.isascii():
        decoder = codecs.getincrementaldecoder("utf-8")()
        view = memoryview(raw)
        try:
            for start in range(0, len(raw), 1 << 24):
                decoder.decode(view[start : start + (1 << 24)])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    # A run of >= 2 * stride digits covers two consecutive multiples of the stride: look only there.
    sample = np.frombuffer(raw, np.uint8)[::_DIGIT_STRIDE]
    digit = (sample >= 48) & (sample <= 57)
    for k in np.flatnonzero(digit[:-1] & digit[1:]).tolist():
        p = k * _DIGIT_STRIDE
        if _DIGIT_RUN.match(raw, p, p + _DIGIT_STRIDE + 1).end() == p + _DIGIT_STRIDE + 1:
            return False
    return True


def _columns(coco: _Coco) -> CocoColumns:
    images = coco.images
    cats = None
    if coco.categories is not _UNSET:
        cats = [{"id": c.id} if c.name is _UNSET else {"id": c.id, "name": c.name} for c in coco.categories]
    return CocoColumns(
        *image_columns_of(images),
        categories=cats,
        annotations=None if coco.annotations is _UNSET else annotation_columns(coco.annotations),
    )


def image_columns_of(images: list[_Image]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(I,) int64 ids, widths, heights and the file names of decoded image records."""
    n = len(images)
    get = attrgetter
    return (
        np.fromiter(map(get("id"), images), np.int64, n),
        np.fromiter(map(get("width"), images), np.int64, n),
        np.fromiter(map(get("height"), images), np.int64, n),
        list(map(get("file_name"), images)),
    )


def annotation_columns(anns: list[_Annotation]) -> AnnotationColumns:
    """The columns of decoded annotation records (raises ``OverflowError`` for a value beyond int64 / float64)."""
    n = len(anns)
    get = attrgetter
    crowd = list(map(get("iscrowd"), anns))
    crowd_missing = np.fromiter((c is _UNSET for c in crowd), bool, n) if _UNSET in crowd else np.zeros(n, bool)
    area = list(map(get("area"), anns))
    if _UNSET in area:
        area = [math.nan if a is _UNSET else a for a in area]
    return AnnotationColumns(
        ids=np.fromiter(map(get("id"), anns), np.int64, n),
        image_ids=np.fromiter(map(get("image_id"), anns), np.int64, n),
        category_ids=np.fromiter(map(get("category_id"), anns), np.int64, n),
        xywh=np.fromiter(chain.from_iterable(map(get("bbox"), anns)), np.float64, 4 * n).reshape(n, 4),
        iscrowd=np.fromiter((0 if c is _UNSET else c for c in crowd) if crowd_missing.any() else crowd, np.int64, n),
        iscrowd_missing=crowd_missing,
        areas=np.fromiter(area, np.float64, n),
        original=_Originals(anns),
    )


class _Originals:
    """The original JSON values of one annotation (for the messages of the few rows with a problem)."""

    def __init__(self, anns: list[_Annotation]) -> None:
        self._anns = anns

    def bbox(self, k: int) -> list:
        return list(self._anns[k].bbox)

    def iscrowd(self, k: int) -> Any:
        return self._anns[k].iscrowd

    def __iter__(self) -> Iterator[_Annotation]:
        return iter(self._anns)


@dataclass
class AnnotationColumns:
    """The ``annotations`` of a file read as columns (:mod:`explorer.dataset.coco_columns`), in file order.

    Attributes:
        ids, image_ids, category_ids: (N,) int64; xywh: (N, 4) float64 the ``bbox`` values.
        iscrowd: (N,) int64 (0 where absent); iscrowd_missing: (N,) bool.
        areas: (N,) float64 the ``area`` values, NaN where absent.
        original: ``original.bbox(k)`` and ``original.iscrowd(k)``, the JSON values of row ``k`` for the messages.
    """

    ids: np.ndarray
    image_ids: np.ndarray
    category_ids: np.ndarray
    xywh: np.ndarray
    iscrowd: np.ndarray
    iscrowd_missing: np.ndarray
    areas: np.ndarray
    original: Any


class _Values:
    """``values[k]`` computed on demand (the original value of one row, for a message)."""

    def __init__(self, get: Callable[[int], Any]) -> None:
        self._get = get

    def __getitem__(self, k: int) -> Any:
        return self._get(int(k))


class _ColumnRows(_AnnotationRows):
    """The rows of :class:`AnnotationColumns`: the same checks and messages as records read as dicts."""

    def __init__(self, cols: AnnotationColumns, problems: Problems) -> None:
        self.anns = []
        self.n = len(cols.ids)
        self.keep = np.ones(self.n, dtype=bool)
        self.problems = problems
        self.ids = _Values(lambda k: int(cols.ids[k]))
        self.image_col = _Values(lambda k: int(cols.image_ids[k]))


def parse_annotation_columns(
    cols: AnnotationColumns, images: ImageRecords, cats: dict[int, str], problems: Problems
) -> Annotations:
    """:func:`parse_annotations` for annotations read as columns: the same rows kept, repaired and dropped, the
    same problems in the same order (ids, bboxes and flags are already numbers of the right type). ``cols`` is
    consumed: its arrays are changed and released as the checks go, to bound the memory of millions of boxes."""
    rows = _ColumnRows(cols, problems)
    image_idx = _lookup(images.ids, cols.image_ids)
    _drop_unknown_images(rows, image_idx, images)
    if not cats:  # no categories list: take them from the annotations
        cats = {c: f"id {c}" for c in np.unique(cols.category_ids).tolist()}
    cat_arr = cols.category_ids
    known = np.isin(cat_arr, np.fromiter(cats, np.int64, count=len(cats)))
    rows.drop(
        np.flatnonzero(~known),
        "unknown_category",
        lambda k: f"category_id {short(int(cat_arr[k]))} is not in 'categories'; dropped",
    )
    bboxes = _Values(cols.original.bbox)
    boxes = check_xywh(rows, cols.xywh, bboxes)  # in place: the columns are consumed
    box_area = boxes[:, 2] * boxes[:, 3]
    clamped = _clamped_xyxy(rows, boxes, bboxes, images, image_idx)
    cols.xywh = boxes = None  # release the largest column before the tables are built (millions of boxes)
    iscrowd = report_iscrowd(rows, cols.iscrowd, cols.iscrowd_missing, _Values(cols.original.iscrowd))
    areas = report_areas(rows, cols.areas, box_area)
    cols.areas = cols.iscrowd = box_area = None
    kept_rows = np.flatnonzero(rows.keep)
    _report_duplicate_id_column(rows, cols.ids, kept_rows)
    columns = {"image": image_idx, "category": cat_arr, "xyxy": clamped, "area": areas, "iscrowd": iscrowd}
    release_free_memory()  # the checks' temporaries, before the grouped copies (the peak of a big load)
    return group_by_image(problems, kept_rows, columns, len(images.ids), cats, lambda order: cols.ids[order])


def _lookup(image_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(N,) int64 position of each of ``wanted`` in the unique int64 ``image_ids``, -1 where absent."""
    if len(image_ids) == 0:
        return np.full(len(wanted), -1, np.int64)
    sorter = np.argsort(image_ids, kind="stable")
    pos = np.minimum(np.searchsorted(image_ids, wanted, sorter=sorter), len(image_ids) - 1)
    found = sorter[pos]
    return np.where(image_ids[found] == wanted, found, -1).astype(np.int64)


def _report_duplicate_id_column(rows: _AnnotationRows, ids: np.ndarray, kept_rows: np.ndarray) -> None:
    """:func:`_report_duplicate_ids` on an int64 id column."""
    kept_ids = ids[kept_rows]
    _, first = np.unique(kept_ids, return_index=True)
    if len(first) == len(kept_ids):
        return
    repeat = np.ones(len(kept_ids), bool)
    repeat[first] = False
    for k in kept_rows[repeat].tolist():
        report_duplicate_id(rows.problems, rows.image_col[k], int(ids[k]))
