"""COCO annotation records checked one by one: kept, repaired or dropped, each change a problem row.

:func:`parse_annotations` turns the ``annotations`` list into the arrays of a
:class:`explorer.dataset.coco.CocoDataset`, checked against the images and categories of
:mod:`explorer.dataset.coco_records`. A record that cannot be used is dropped and reported; one that can be
repaired (a box sticking out of its image, a missing ``iscrowd``) is repaired and reported. Boxes follow
torchvision's ``ConvertCocoPolysToMask``: xywh -> xyxy in float32, clamped to the image, kept when ``x2 > x1``
and ``y2 > y1``.

Example:
    >>> from explorer.dataset.coco_records import parse_images
    >>> problems = Problems()
    >>> images = parse_images([{"id": 1, "width": 64, "height": 48}], problems)
    >>> anns = parse_annotations([{"id": 7, "image_id": 1, "category_id": 3, "bbox": [60, 10, 10, 5]}],
    ...                          images, {3: "cat"}, problems)
    >>> anns.boxes_xyxy.tolist(), [row[1] for row in problems.rows]
    ([[60.0, 10.0, 64.0, 15.0]], ['box_outside_image', 'missing_iscrowd', 'missing_area'])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from explorer.boxes import xywh_to_xyxy
from explorer.dataset.coco_problems import (
    MISSING,
    Problems,
    all_int64,
    as_float,
    id_text,
    is_id,
    is_int,
    is_number,
    short,
)
from explorer.dataset.coco_records import Annotations, ImageRecords, group_by_image, hashable, id_array


class _AnnotationRows:
    """The annotation records being checked: their columns, which rows are still kept, and the problems."""

    def __init__(self, anns: list[dict], problems: Problems) -> None:
        self.anns = anns
        self.n = len(anns)
        self.keep = np.ones(self.n, dtype=bool)
        self.problems = problems
        self.ids = self.column("id")
        self.image_col = self.column("image_id")

    def column(self, key: str) -> list[Any]:
        """The value of ``key`` in every record (:data:`MISSING` where absent)."""
        return [a.get(key, MISSING) for a in self.anns]

    def drop(
        self, rows: np.ndarray | list[int], kind: str, message: str | Callable[[int], str], severity: str = "error"
    ) -> None:
        """Drop the still-kept ``rows``, one problem each (``message(k)`` when callable)."""
        keep = self.keep
        for k in np.asarray(rows, dtype=np.int64).tolist():
            if not keep[k]:
                continue
            keep[k] = False
            msg = message(k) if callable(message) else message
            self.problems.add(severity, kind, msg, image_id=self.image_col[k], annotation_id=self.ids[k])

    def warn(self, k: int, kind: str, message: str) -> None:
        """A warning about row ``k``, which stays kept."""
        self.problems.add("warning", kind, message, image_id=self.image_col[k], annotation_id=self.ids[k])


def parse_annotations(records: list, images: ImageRecords, cats: dict[int, str], problems: Problems) -> Annotations:
    """Check every annotation record against the images and categories; drop or repair, and report.

    Args:
        records: the ``annotations`` list; images: from :func:`parse_images`; cats: from :func:`parse_categories`.
        problems: where the problems go, in a fixed order (ids, images, categories, boxes, iscrowd, area,
            duplicates, crowd).
    """
    rows = _AnnotationRows(_dict_records(records, problems), problems)
    if not all_int64(rows.ids):
        bad = [k for k, v in enumerate(rows.ids) if not is_id(v)]
        rows.drop(bad, "missing_key", lambda k: f"annotation has no valid 'id' ({id_text(rows.ids[k])}); dropped")
    image_idx = _image_index(rows, images)
    cat_arr, cats = _category_ids(rows, cats)
    bboxes = rows.column("bbox")
    boxes = _xywh_boxes(rows, bboxes)
    clamped = _clamped_xyxy(rows, boxes, bboxes, images, image_idx)
    iscrowd = _iscrowd(rows)
    areas = _areas(rows, boxes)
    kept_rows = np.flatnonzero(rows.keep)
    _report_duplicate_ids(rows, kept_rows)
    columns = {"image": image_idx, "category": cat_arr, "xyxy": clamped, "area": areas, "iscrowd": iscrowd}
    return group_by_image(
        problems,
        kept_rows,
        columns,
        len(images.ids),
        cats,
        lambda order: id_array([rows.ids[k] for k in order.tolist()]),
    )


def _dict_records(records: list, problems: Problems) -> list[dict]:
    """The records that are objects; every other one is reported (``invalid_record``)."""
    if all(type(a) is dict for a in records):
        return records
    anns = []
    for k, a in enumerate(records):
        if type(a) is dict:
            anns.append(a)
        else:
            problems.add("error", "invalid_record", f"annotations[{k}] is a {type(a).__name__}, not an object; dropped")
    return anns


def _image_index(rows: _AnnotationRows, images: ImageRecords) -> np.ndarray:
    """(N,) int64 position of each annotation's image, -1 when not a valid image. Annotations of an image dropped
    for its size are dropped silently and counted in that image's ``image_size`` problem."""
    image_col, n = rows.image_col, rows.n
    index_get = images.index.get
    if set(map(type, image_col)) <= {int, str}:
        image_idx = np.fromiter((index_get(v, -1) for v in image_col), np.int64, count=n)
    else:
        image_idx = np.fromiter((index_get(v, -1) if hashable(v) else -1 for v in image_col), np.int64, count=n)
    _drop_unknown_images(rows, image_idx, images)
    return image_idx


def _drop_unknown_images(rows: _AnnotationRows, image_idx: np.ndarray, images: ImageRecords) -> None:
    """Drop the rows whose image is not a valid one (``image_idx`` -1): silently for an image set aside for its
    size (counted in its ``image_size`` problem, one per such image), else as ``missing_image``."""
    image_col = rows.image_col
    per_invalid: Counter = Counter()
    bad_rows = []
    for k in np.flatnonzero(image_idx < 0).tolist():
        v = image_col[k]
        if hashable(v) and v in images.invalid:
            per_invalid[v] += 1
            rows.keep[k] = False
        else:
            bad_rows.append(k)
    rows.drop(
        bad_rows,
        "missing_image",
        lambda k: (
            "annotation has no 'image_id'; dropped"
            if image_col[k] is MISSING
            else f"annotation refers to image id {short(image_col[k])}, which is not in 'images'; dropped"
        ),
    )
    for image_id, reason in images.invalid.items():
        count = per_invalid.get(image_id, 0)
        rows.problems.add(
            "error",
            "image_size",
            f"image has no valid width/height ({reason}); it and its {count} annotation(s) are not scanned",
            image_id=image_id,
        )


def _category_ids(rows: _AnnotationRows, cats: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
    """(N,) int64 category id of each annotation (an unknown one is dropped), and the categories (taken from the
    annotations, sorted, when the file has none)."""
    cat_col = rows.column("category_id")
    if not cats:  # no categories list: take them from the annotations
        for v in cat_col:
            if is_int(v) and v not in cats:
                cats[v] = f"id {v}"
        cats = dict(sorted(cats.items()))
    if all_int64(cat_col):
        cat_arr = np.asarray(cat_col, dtype=np.int64) if rows.n else np.zeros(0, np.int64)
    else:
        cat_arr = np.asarray([v if is_int(v) else -(2**62) for v in cat_col], dtype=np.int64)
    known = np.isin(cat_arr, np.fromiter(cats, np.int64, count=len(cats)))
    rows.drop(
        np.flatnonzero(~known),
        "unknown_category",
        lambda k: (
            "annotation has no 'category_id'; dropped"
            if cat_col[k] is MISSING
            else f"category_id {short(cat_col[k])} is not in 'categories'; dropped"
        ),
    )
    return cat_arr, cats


def _xywh_boxes(rows: _AnnotationRows, bboxes: list[Any]) -> np.ndarray:
    """(N, 4) float64 xywh; malformed, non-finite and empty boxes are dropped (non-finite ones set to 0)."""
    return check_xywh(rows, _bbox_array(bboxes, rows.drop), bboxes)


def check_xywh(rows: _AnnotationRows, boxes: np.ndarray, bboxes: Sequence[Any]) -> np.ndarray:
    """Drop the non-finite boxes of (N, 4) float64 xywh ``boxes`` (set to 0 in place) and the empty ones;
    ``bboxes[k]`` is the original value of row ``k``, for the messages."""
    finite = np.isfinite(boxes).all(axis=1)
    rows.drop(
        np.flatnonzero(~finite & rows.keep),
        "non_finite",
        lambda k: f"bbox {short(bboxes[k])} has NaN or infinite values (or numbers beyond float64); dropped",
    )
    boxes[~finite] = 0.0
    degenerate = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    rows.drop(
        np.flatnonzero(degenerate & rows.keep),
        "empty_box",
        lambda k: f"bbox {short(bboxes[k])} has width or height <= 0; dropped",
    )
    return boxes


def _clamped_xyxy(
    rows: _AnnotationRows, boxes: np.ndarray, bboxes: list[Any], images: ImageRecords, image_idx: np.ndarray
) -> np.ndarray:
    """(N, 4) float32 xyxy clamped to the image, as torchvision's ConvertCocoPolysToMask: beyond float32 or empty
    after clamping is dropped, sticking out is a warning."""
    n, keep = rows.n, rows.keep
    b32 = xywh_to_xyxy(boxes)
    too_big = ~np.isfinite(b32).all(axis=1)
    rows.drop(
        np.flatnonzero(too_big & keep),
        "non_finite",
        lambda k: f"bbox {short(bboxes[k])} has values beyond the 32-bit float range; dropped",
    )
    b32[too_big] = 0.0
    safe_idx = np.maximum(image_idx, 0)
    w_img = images.widths.astype(np.float32)[safe_idx] if len(images.ids) else np.zeros(n, np.float32)
    h_img = images.heights.astype(np.float32)[safe_idx] if len(images.ids) else np.zeros(n, np.float32)
    del safe_idx
    # a value changes under clipping to [0, side] exactly when it lies outside (all values are finite here)
    outside = np.zeros(n, bool)
    for col, side in ((0, w_img), (2, w_img), (1, h_img), (3, h_img)):
        outside |= (b32[:, col] < 0) | (b32[:, col] > side)
    outside &= keep
    over = {
        k: float(max(-b32[k, 0], -b32[k, 1], b32[k, 2] - w_img[k], b32[k, 3] - h_img[k]))
        for k in np.flatnonzero(outside).tolist()
    }
    clamped = b32  # clipped in place: the unclipped values needed for the messages are in ``over``
    np.clip(clamped[:, 0], 0, w_img, out=clamped[:, 0])
    np.clip(clamped[:, 2], 0, w_img, out=clamped[:, 2])
    np.clip(clamped[:, 1], 0, h_img, out=clamped[:, 1])
    np.clip(clamped[:, 3], 0, h_img, out=clamped[:, 3])
    empty_after = (clamped[:, 2] <= clamped[:, 0]) | (clamped[:, 3] <= clamped[:, 1])
    rows.drop(
        np.flatnonzero(empty_after & keep),
        "box_outside_image",
        lambda k: (
            f"bbox {short(bboxes[k])} lies outside its {int(w_img[k])}x{int(h_img[k])} image "
            "(empty after clamping); dropped"
        ),
    )
    for k in np.flatnonzero(outside & keep).tolist():
        rows.warn(
            k,
            "box_outside_image",
            f"bbox {short(bboxes[k])} extends {over[k]:.3g} px outside its {int(w_img[k])}x{int(h_img[k])} image; "
            "clamped",
        )
    return clamped


def _iscrowd(rows: _AnnotationRows) -> np.ndarray:
    """(N,) bool ``iscrowd != 0``; a missing flag is 0 (one warning for all), any other value is a warning."""
    crowd_col = rows.column("iscrowd")
    keep = rows.keep
    if all_int64(crowd_col):
        crowd_arr = np.asarray(crowd_col, dtype=np.int64) if rows.n else np.zeros(0, np.int64)
        return report_iscrowd(rows, crowd_arr, None, crowd_col)
    else:
        crowd_arr = np.zeros(rows.n, np.int64)
        odd_list = []
        missing = 0
        for k, v in enumerate(crowd_col):
            if v is MISSING:
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
            rows.problems.add("warning", "missing_iscrowd", f"{missing} annotation(s) have no 'iscrowd'; taken as 0")
    _report_odd_iscrowd(rows, odd, crowd_arr, crowd_col)
    return crowd_arr != 0


def report_iscrowd(
    rows: _AnnotationRows, crowd_arr: np.ndarray, missing: np.ndarray | None, crowd_col: Sequence[Any]
) -> np.ndarray:
    """(N,) bool ``iscrowd != 0`` from (N,) int64 flags of whole-number values (``missing``: (N,) bool, where the
    key is absent, or None when none is), with the problems :func:`_iscrowd` reports; ``crowd_col[k]`` is the
    original value of row ``k``, for the messages."""
    keep = rows.keep
    odd = (crowd_arr != 0) & (crowd_arr != 1) & keep
    if missing is not None:
        odd &= ~missing
        count = int((missing & keep).sum())
        if count:
            rows.problems.add("warning", "missing_iscrowd", f"{count} annotation(s) have no 'iscrowd'; taken as 0")
    _report_odd_iscrowd(rows, np.flatnonzero(odd), crowd_arr, crowd_col)
    return crowd_arr != 0


def _report_odd_iscrowd(
    rows: _AnnotationRows, odd: np.ndarray, crowd_arr: np.ndarray, crowd_col: Sequence[Any]
) -> None:
    for k in odd.tolist():
        rows.warn(
            k, "invalid_iscrowd", f"iscrowd {short(crowd_col[k])} is not 0 or 1; taken as {1 if crowd_arr[k] else 0}"
        )


def _areas(rows: _AnnotationRows, boxes: np.ndarray) -> np.ndarray:
    """(N,) float64 ``area`` field; the box area where it is missing or invalid (one info row for all)."""
    area_col = rows.column("area")
    box_area = (boxes[:, 2] * boxes[:, 3]).astype(np.float64)
    try:
        if not set(map(type, area_col)) <= {int, float}:
            raise OverflowError  # not all numbers: the per-value path below
        areas = np.asarray(area_col, dtype=np.float64) if rows.n else np.zeros(0)
    except OverflowError:  # an integer beyond float64 (10**400)
        areas = np.fromiter(map(as_float, area_col), np.float64, count=rows.n)
    return report_areas(rows, areas, box_area)


def report_areas(rows: _AnnotationRows, areas: np.ndarray, box_area: np.ndarray) -> np.ndarray:
    """(N,) float64 ``areas`` (NaN where absent or not a number) with the invalid ones replaced by ``box_area``,
    one info row for all of them."""
    bad_area = ~(np.isfinite(areas) & (areas >= 0))
    if (bad_area & rows.keep).any():
        cnt = int((bad_area & rows.keep).sum())
        rows.problems.add(
            "info", "missing_area", f"{cnt} annotation(s) have no valid 'area'; the bbox area is used for their size"
        )
    return np.where(bad_area, box_area, areas)


def _report_duplicate_ids(rows: _AnnotationRows, kept_rows: np.ndarray) -> None:
    """A warning for every kept annotation whose id was already used (all are kept)."""
    id_values = [rows.ids[k] for k in kept_rows.tolist()]
    if len(set(id_values)) == len(id_values):
        return
    seen: set = set()
    for k, v in zip(kept_rows.tolist(), id_values, strict=True):
        if v in seen:
            report_duplicate_id(rows.problems, rows.image_col[k], v)
        seen.add(v)


def report_duplicate_id(problems: Problems, image_id: object, ann_id: object) -> None:
    """The warning for a kept annotation whose id was used before (both readers write it)."""
    problems.add(
        "warning", "duplicate_id", f"annotation id {ann_id!r} is used more than once; kept",
        image_id=image_id, annotation_id=ann_id,
    )  # fmt: skip


def _bbox_array(bboxes: list[Any], drop: Callable[..., None]) -> np.ndarray:
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
        if type(b) is list and len(b) == 4 and all(is_number(v) for v in b):
            out[k] = [as_float(v) for v in b]
        else:
            bad.append(k)
    drop(
        bad,
        "invalid_bbox",
        lambda k: (
            "annotation has no 'bbox'; dropped"
            if bboxes[k] is MISSING
            else f"bbox {short(bboxes[k])} is not a list of 4 numbers [x, y, w, h]; dropped"
        ),
    )
    return out
