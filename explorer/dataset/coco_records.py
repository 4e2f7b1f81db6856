"""COCO image and category records checked one by one: the valid ones, and a problem row for each other.

:func:`parse_images` and :func:`parse_categories` read the ``images`` and ``categories`` lists of a parsed COCO
dict (:func:`explorer.dataset.coco.load_coco`); :mod:`explorer.dataset.coco_annotations` checks the annotations
against them. The problem rows and value checks are those of :mod:`explorer.dataset.coco_problems`. The images of a
file read as columns go through :func:`image_columns` (the same records kept and reported); :func:`group_by_image`
is the last step of both annotation paths (:class:`Annotations`).

Example:
    >>> problems = Problems()
    >>> images = parse_images([{"id": 1, "width": 64, "height": 48}, {"id": 2}], problems)
    >>> images.ids, images.invalid
    ([1], {2: 'width missing, height missing'})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from explorer.dataset.coco_problems import (
    MAX_IMAGE_SIDE,
    MISSING,
    Problems,
    id_text,
    image_side_problem,
    is_id,
    is_int,
    short,
)


@dataclass
class ImageRecords:
    """The valid images of a file, in file order, and the ids of those dropped for their size."""

    ids: list[Any]
    file_names: list[str]
    heights: np.ndarray
    widths: np.ndarray
    index: dict[Any, int] | None  # valid image id -> position (None from the columnar reader: ids are int64)
    invalid: dict[Any, str]  # id of an image dropped for its size -> reason


def parse_images(records: list, problems: Problems) -> ImageRecords:
    """The ``images`` list: records without a valid id or with a duplicate id are reported and dropped; those
    without a usable width/height are set aside in ``invalid`` (reported with their annotation count later)."""
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
        image_id = rec.get("id", MISSING)
        if not is_id(image_id):
            problems.add("error", "missing_key", f"images[{k}] has no valid 'id' ({id_text(image_id)}); dropped")
            continue
        if image_id in index or image_id in invalid:
            problems.add(
                "error",
                "duplicate_id",
                f"image id {image_id!r} appears again at images[{k}]; the first is kept",
                image_id=image_id,
            )
            continue
        h, w = rec.get("height", MISSING), rec.get("width", MISSING)
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
    return ImageRecords(ids, names, np.asarray(hs, np.int64), np.asarray(ws, np.int64), index, invalid)


def image_columns(
    ids: np.ndarray, widths: np.ndarray, heights: np.ndarray, file_names: list[str], problems: Problems
) -> ImageRecords:
    """:func:`parse_images` for images read as columns ((I,) int64 ids, widths, heights): the same records kept,
    set aside and reported, with ``ids`` an int64 array and no ``index`` dict."""
    _, first = np.unique(ids, return_index=True)
    is_first = np.zeros(len(ids), bool)
    is_first[first] = True
    for k in np.flatnonzero(~is_first).tolist():
        image_id = int(ids[k])
        problems.add(
            "error",
            "duplicate_id",
            f"image id {image_id!r} appears again at images[{k}]; the first is kept",
            image_id=image_id,
        )
    good = (widths >= 1) & (widths <= MAX_IMAGE_SIDE) & (heights >= 1) & (heights <= MAX_IMAGE_SIDE)
    invalid: dict[Any, str] = {}
    for k in np.flatnonzero(is_first & ~good).tolist():
        w, h = int(widths[k]), int(heights[k])
        bad = [f"{key} {why}" for key, v in (("width", w), ("height", h)) if (why := image_side_problem(v)) is not None]
        invalid[int(ids[k])] = ", ".join(bad)
    keep = is_first & good
    names = file_names if keep.all() else [file_names[k] for k in np.flatnonzero(keep).tolist()]
    return ImageRecords(ids[keep], names, heights[keep], widths[keep], None, invalid)


def parse_categories(data: dict, problems: Problems) -> dict[int, str]:
    """Category id -> name from ``data["categories"]`` ({} when absent: ids are then taken from the annotations)."""
    records = data.get("categories", MISSING)
    cats: dict[int, str] = {}
    if records is MISSING or not isinstance(records, list):
        what = "no 'categories' list" if records is MISSING else f"'categories' is a {type(records).__name__}"
        problems.add("warning", "missing_key", f"{what}: category ids are taken from the annotations, unnamed")
        return {}
    for k, rec in enumerate(records):
        if type(rec) is not dict or not is_int(rec.get("id")):
            what = id_text(rec.get("id", MISSING)) if type(rec) is dict else short(rec)
            problems.add("error", "invalid_record", f"categories[{k}] has no integer 'id' ({what}); dropped")
            continue
        cid = rec["id"]
        if cid in cats:
            problems.add("error", "duplicate_id", f"category id {cid} appears again at categories[{k}]; first kept")
            continue
        cname = rec.get("name", MISSING)
        if type(cname) is not str or not cname:
            problems.add("warning", "missing_key", f"category {cid} has no 'name'; shown as 'id {cid}'")
            cname = f"id {cid}"
        cats[cid] = cname
    if not records:
        problems.add(
            "warning", "missing_key", "the 'categories' list is empty: category ids are taken from the annotations"
        )
    return cats


def hashable(value: Any) -> bool:
    """A value that can be an id key (int or str; a list or dict from a broken record cannot)."""
    return type(value) in (int, str)


def id_array(values: list[Any] | np.ndarray) -> np.ndarray:
    """Ids as an int64 array, or an object array when some are strings (an int64 array is returned as is)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    if set(map(type, values)) <= {int}:
        return np.asarray(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    return np.asarray(values, dtype=object)


@dataclass
class Annotations:
    """The kept annotations, grouped by image (image order, then file order), and the categories.

    Attributes:
        category_ids: (C,) int64; ``category_names`` (C,) list of str.
        ann_ids: (B,) int64 (object for string ids); ann_image: (B,) int64 image position; ann_category: (B,) int64.
        boxes_xyxy: (B, 4) float32 clamped to the image; areas: (B,) float64; iscrowd: (B,) bool.
        ann_offsets: (I + 1,) int64; crowd_kept: crowd annotations among the kept ones.
    """

    category_ids: np.ndarray
    category_names: list[str]
    ann_ids: np.ndarray
    ann_image: np.ndarray
    ann_category: np.ndarray
    boxes_xyxy: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    ann_offsets: np.ndarray
    crowd_kept: int


def group_by_image(
    problems: Problems,
    kept_rows: np.ndarray,
    columns: dict[str, np.ndarray],
    n_images: int,
    cats: dict[int, str],
    ids_of: Callable[[np.ndarray], np.ndarray],
) -> Annotations:
    """The kept rows grouped by image (image order, then file order), after the crowd info row.

    Args:
        columns: (N,) ``image`` position, ``category`` id, (N, 4) ``xyxy``, ``area``, ``iscrowd`` of every row.
        ids_of: the (K,) annotation id array of (K,) int64 rows (:func:`id_array`).
    """
    iscrowd, image_idx = columns["iscrowd"], columns["image"]
    crowd_kept = int(iscrowd[kept_rows].sum())
    if crowd_kept:
        problems.add(
            "info",
            "crowd",
            f"{crowd_kept} crowd annotation(s) (iscrowd=1) are excluded from matching, as in torchvision and "
            "detectron2",
        )
    order = kept_rows[np.argsort(image_idx[kept_rows], kind="stable")]
    ann_image = image_idx[order]
    offsets = np.zeros(n_images + 1, np.int64)
    np.cumsum(np.bincount(ann_image, minlength=n_images), out=offsets[1:])
    cat_ids = np.fromiter(cats, np.int64, count=len(cats))
    return Annotations(
        category_ids=cat_ids,
        category_names=[cats[c] for c in cat_ids.tolist()],
        ann_ids=ids_of(order),
        ann_image=ann_image.astype(np.int64, copy=False),
        ann_category=columns["category"][order],
        boxes_xyxy=np.ascontiguousarray(columns["xyxy"][order]),
        areas=columns["area"][order],
        iscrowd=iscrowd[order],
        ann_offsets=offsets,
        crowd_kept=crowd_kept,
    )
