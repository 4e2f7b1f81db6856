"""A :class:`~explorer.dataset.coco.CocoDataset` from boxes already in pixel xyxy (the YOLO and VOC readers).

The readers of other formats parse their files into one :class:`ImageTable` and one :class:`BoxTable`; this
module applies the checks of the COCO reader to the boxes (non-finite or empty boxes dropped, boxes clamped to
their image, a problem row for each) and assembles the dataset with :func:`explorer.dataset.coco.assemble`. The
boxes stay the float32 values the reader computed: they never pass through COCO's xywh, whose float32 sum cannot
give back every float32 xyxy box.

Example:
    >>> problems = Problems()
    >>> images = ImageTable(["a.jpg"], [64], [48], ["a.txt"])
    >>> boxes = BoxTable(image=[0, 0], category=[0, 0], xyxy=[[60, 10, 70, 15], [5, 5, 5, 9]], line=[1, 2])
    >>> ds = build_dataset(images, boxes, {0: "cat"}, problems, name="a", unit="line")
    >>> ds.boxes_xyxy.tolist(), ds.problems["kind"].tolist()
    ([[60.0, 10.0, 64.0, 15.0]], ['box_outside_image', 'empty_box'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explorer.dataset.coco import CocoDataset, assemble
from explorer.dataset.coco_problems import Problems
from explorer.dataset.coco_records import Annotations, ImageRecords


@dataclass
class ImageTable:
    """The usable images, in reading order (image ids are 1..I in this order).

    Attributes:
        file_names: (I,) paths relative to the dataset's image root; widths, heights: (I,) int pixels.
        sources: (I,) the annotation file of each image (label .txt, VOC .xml), named in problem messages.
        images_in_files: images found, usable or not (for the counts); default: I.
    """

    file_names: list[str]
    widths: list[int]
    heights: list[int]
    sources: list[str]
    images_in_files: int | None = None


@dataclass
class BoxTable:
    """Boxes read from the annotation files, in reading order (annotation ids are 1..B in this order).

    Attributes:
        image: (B,) int position in the :class:`ImageTable`; category: (B,) int category id.
        xyxy: (B, 4) float32 pixel boxes, not yet clamped; line: (B,) where each box is in its file (line number,
            object number); iscrowd: (B,) bool (default all False).
    """

    image: Any
    category: Any
    xyxy: Any
    line: Any
    iscrowd: Any = field(default=None)


def build_dataset(
    images: ImageTable,
    boxes: BoxTable,
    categories: dict[int, str],
    problems: Problems,
    *,
    name: str,
    unit: str,
    quiet_clip_px: float = 0.0,
    image_root: str = "",
    crowd_note: str = "crowd annotation(s) (iscrowd=1)",
) -> CocoDataset:
    """Check the boxes and assemble the dataset.

    Args:
        images, boxes: what the reader parsed; categories: category id -> name, in the order to keep.
        problems: the reader's problem rows so far (the box checks are added after them).
        name: display name; unit: what ``BoxTable.line`` counts, for messages ("line", "object").
        quiet_clip_px: a box that sticks out of its image by at most this much is clamped without a problem row.
        image_root: the folder the file names are relative to; crowd_note: how the info row names crowd boxes.
    """
    n_img = len(images.file_names)
    img = np.asarray(boxes.image, np.int64).reshape(-1)
    cat = np.asarray(boxes.category, np.int64).reshape(-1)
    line = np.asarray(boxes.line, np.int64).reshape(-1)
    b32 = np.asarray(boxes.xyxy, np.float32).reshape(-1, 4)
    crowd = np.zeros(len(img), bool) if boxes.iscrowd is None else np.asarray(boxes.iscrowd, bool).reshape(-1)
    keep, clamped = _check_boxes(images, img, line, b32, problems, unit=unit, quiet_clip_px=quiet_clip_px)
    n_crowd = int(crowd[keep].sum())
    if n_crowd:
        problems.add("info", "crowd", f"{n_crowd} {crowd_note} are excluded from matching, as crowd regions are")
    rows = np.flatnonzero(keep)
    order = rows[np.argsort(img[rows], kind="stable")]
    offsets = np.zeros(n_img + 1, np.int64)
    np.cumsum(np.bincount(img[order], minlength=n_img), out=offsets[1:])
    kb = clamped[order]
    cat_ids = np.fromiter(categories, np.int64, count=len(categories))
    kept = Annotations(
        category_ids=cat_ids,
        category_names=[categories[c] for c in cat_ids.tolist()],
        ann_ids=order.astype(np.int64) + 1,
        ann_image=img[order],
        ann_category=cat[order],
        boxes_xyxy=np.ascontiguousarray(kb),
        areas=((kb[:, 2] - kb[:, 0]) * (kb[:, 3] - kb[:, 1])).astype(np.float64),
        iscrowd=crowd[order],
        ann_offsets=offsets,
        crowd_kept=n_crowd,
    )
    records = ImageRecords(
        ids=list(range(1, n_img + 1)),
        file_names=list(images.file_names),
        heights=np.asarray(images.heights, np.int64).reshape(-1),
        widths=np.asarray(images.widths, np.int64).reshape(-1),
        index={},
        invalid={},
    )
    ds = assemble(records, kept, problems.frame(), name, annotations_in_file=len(img))
    ds.image_root = image_root
    if images.images_in_files is not None:
        ds.counts["images_in_file"] = images.images_in_files
    return ds


def _check_boxes(
    images: ImageTable,
    img: np.ndarray,
    line: np.ndarray,
    b32: np.ndarray,
    problems: Problems,
    *,
    unit: str,
    quiet_clip_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(B,) bool boxes kept and (B, 4) float32 boxes clamped to their image, as the COCO reader's checks: a
    non-finite box, a box of zero or negative size, and a box outside its image are dropped (error rows); a box
    sticking out by more than ``quiet_clip_px`` is clamped with a warning row."""
    w = np.asarray(images.widths, np.float32)[img] if len(img) else np.zeros(0, np.float32)
    h = np.asarray(images.heights, np.float32)[img] if len(img) else np.zeros(0, np.float32)
    finite = np.isfinite(b32).all(axis=1)
    safe = np.where(finite[:, None], b32, 0).astype(np.float32)
    empty = finite & ((safe[:, 2] <= safe[:, 0]) | (safe[:, 3] <= safe[:, 1]))
    clamped = np.stack(
        [np.clip(safe[:, 0], 0, w), np.clip(safe[:, 1], 0, h), np.clip(safe[:, 2], 0, w), np.clip(safe[:, 3], 0, h)],
        axis=1,
    ).astype(np.float32)
    outside = finite & ~empty & ((clamped[:, 2] <= clamped[:, 0]) | (clamped[:, 3] <= clamped[:, 1]))
    over = np.maximum.reduce([-safe[:, 0], -safe[:, 1], safe[:, 2] - w, safe[:, 3] - h]) if len(img) else w
    stick = finite & ~empty & ~outside & (over > quiet_clip_px)

    def where(k: int) -> str:
        return f"{images.sources[img[k]]} {unit} {line[k]}"

    for k in np.flatnonzero(~finite | empty | outside | stick).tolist():
        box = "[" + ", ".join(f"{v:.6g}" for v in b32[k].tolist()) + "]"
        if not finite[k]:
            kind, sev, msg = "non_finite", "error", f"box {box} has NaN or infinite values; dropped"
        elif empty[k]:
            kind, sev, msg = "empty_box", "error", f"box {box} has width or height <= 0; dropped"
        else:
            size = f"{int(w[k])}x{int(h[k])}"
            kind, sev = "box_outside_image", "error" if outside[k] else "warning"
            msg = (
                f"box {box} lies outside its {size} image; dropped"
                if outside[k]
                else f"box {box} extends {float(over[k]):.3g} px outside its {size} image; clamped"
            )
        problems.add(sev, kind, f"{where(k)}: {msg}", image_id=int(img[k]) + 1, annotation_id=k + 1)
    return finite & ~empty & ~outside, clamped
