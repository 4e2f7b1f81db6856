"""One image's ground-truth boxes, from a loaded COCO file (by file name), a YOLO .txt, a Pascal VOC .xml, table rows
or a sample scene.

Problems are reported as data (:attr:`BoxSet.notes`: clipped boxes; :attr:`BoxSet.warnings`: skipped boxes,
bad lines), not as crashes; a file that cannot be used at all raises ``ValueError`` naming the problem.

Example:
    >>> bs = parse_yolo("0 0.5 0.5 0.5 0.5\\n1 0.5 0.5 x 0.1\\n", width=100, height=50)
    >>> bs.boxes.tolist(), bs.classes, bs.warnings
    ([[25.0, 12.5, 75.0, 37.5]], ['0'], ['line 2: not a number: x'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from xml.parsers import expat

import numpy as np

from explorer.boxes import cxcywhn_to_xyxy
from explorer.dataset.coco import CocoDataset
from explorer.dataset.voc import parse_voc_xml
from explorer.dataset.yolo_labels import CLIP_NOTICE_PX, decode_label_bytes, parse_label_text
from explorer.synthetic import scene_targets

TABLE_COLUMNS: tuple[str, ...] = ("x1", "y1", "x2", "y2", "label")

__all__ = [
    "CLIP_NOTICE_PX",
    "BoxSet",
    "boxes_from_coco",
    "boxes_from_rows",
    "boxes_from_scene",
    "boxes_from_voc",
    "parse_yolo",
]


@dataclass(frozen=True)
class BoxSet:
    """Validated GT boxes of one image.

    Attributes:
        boxes: (M, 4) float32 xyxy in original image pixels, clipped to the image, positive width and height.
        classes: M class names.
        notes: informational notices (boxes clipped to the image, size mismatches).
        warnings: what was rejected and why (skipped boxes, bad lines named by line number).
        skipped: the rejected entries as ``(source index or line, reason)``.
        crowd: (C, 4) float32 crowd regions (COCO ``iscrowd = 1``): drawn as ignore regions, never matched.
    """

    boxes: np.ndarray
    classes: list[str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def table_rows(self) -> list[dict]:
        """Rows for an editable table: ``x1, y1, x2, y2, label``."""
        return [
            {"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3]), "label": c}
            for b, c in zip(self.boxes.tolist(), self.classes, strict=True)
        ]


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" if abs(v) < 1e7 else f"{v:.3g}" for v in box) + "]"


def sanitize_boxes(
    boxes_xyxy: np.ndarray | Sequence[Sequence[float]],
    classes: Sequence[str] | None,
    width: int,
    height: int,
    *,
    names: Sequence[str] | None = None,
    notes: Sequence[str] = (),
    warnings: Sequence[str] = (),
    skipped: Sequence[tuple[int, str]] = (),
) -> BoxSet:
    """Clip boxes to the image and drop the unusable ones, recording why.

    Args:
        boxes_xyxy: (M, 4) xyxy pixels.
        classes: M class names (None: all "object").
        width, height: the image size in pixels.
        names: how to call each box in notices (default "box 1", "box 2", ...).
        notes, warnings, skipped: notices and rejections collected earlier (prepended).

    Returns:
        A :class:`BoxSet`; boxes that are not finite, or have zero or negative width or height (before or after
        clipping), are skipped and listed.
    """
    if not (math.isfinite(width) and math.isfinite(height) and width >= 1 and height >= 1):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    arr = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) if len(boxes_xyxy) else np.zeros((0, 4))
    cls = list(classes) if classes is not None else ["object"] * len(arr)
    if len(cls) != len(arr):
        raise ValueError(f"got {len(cls)} class names for {len(arr)} boxes")
    labels = list(names) if names is not None else [f"box {k + 1}" for k in range(len(arr))]
    out_notes, out_warn, out_skipped = list(notes), list(warnings), list(skipped)
    keep_boxes, keep_cls = [], []
    for k, (box, c) in enumerate(zip(arr, cls, strict=True)):
        if not np.isfinite(box).all():
            out_skipped.append((k, "non-finite coordinates"))
            out_warn.append(f"{labels[k]}: skipped, non-finite coordinates {box.tolist()}")
            continue
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            reason = f"zero or negative size (w={x2 - x1:g}, h={y2 - y1:g})"
            out_skipped.append((k, reason))
            out_warn.append(f"{labels[k]} {_fmt(box)}: skipped, {reason}")
            continue
        clipped = np.clip(box, 0, [width, height, width, height])
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            out_skipped.append((k, "outside the image"))
            out_warn.append(f"{labels[k]} {_fmt(box)}: skipped, entirely outside the {width}x{height} image")
            continue
        if np.abs(clipped - box).max() > CLIP_NOTICE_PX:
            out_notes.append(f"{labels[k]} {_fmt(box)}: clipped to the image -> {_fmt(clipped)}")
        keep_boxes.append(clipped)
        keep_cls.append(str(c))
    boxes = np.asarray(keep_boxes, dtype=np.float32).reshape(-1, 4)
    return BoxSet(boxes, keep_cls, notes=out_notes, warnings=out_warn, skipped=out_skipped)


def parse_yolo(text: str | bytes, width: int, height: int, *, class_names: Sequence[str] | None = None) -> BoxSet:
    """Parse a YOLO label file: one ``class cx cy w h`` line per box, coordinates normalised to [0, 1].

    The lines follow :func:`explorer.dataset.yolo_labels.parse_label_text` (blank lines and ``#`` comments
    ignored, a 6th value ignored, segment lines reduced to their bounding box with a note); the boxes are
    :func:`explorer.boxes.cxcywhn_to_xyxy`'s. Bad lines are skipped and named in :attr:`BoxSet.warnings` by line
    number.

    Raises:
        ValueError: if the bytes are not UTF-8 text.
    """
    if isinstance(text, bytes):
        text = decode_label_bytes(text)
    lines = parse_label_text(text)
    warnings = [f"line {n}: {reason}" for n, reason in lines.bad]
    skipped = [(n, reason) for n, reason in lines.bad]
    notes = [f"line {n}: a segment (polygon), reduced to its bounding box" for n in lines.segments]
    classes = [
        class_names[c] if class_names is not None and c < len(class_names) else str(c) for c in lines.classes.tolist()
    ]
    names = [f"line {n}" for n in lines.line_numbers.tolist()]
    boxes = cxcywhn_to_xyxy(lines.cxcywhn, width, height)
    return sanitize_boxes(boxes, classes, width, height, names=names, notes=notes, warnings=warnings, skipped=skipped)


def boxes_from_coco(ds: CocoDataset, file_name: str, width: int, height: int) -> BoxSet:
    """The box set of the image named ``file_name`` in a loaded COCO file (:meth:`CocoDataset.index_of`).

    The boxes are the reader's (xywh -> xyxy in float32, clamped to the entry's size, records checked); crowd
    regions go to :attr:`BoxSet.crowd` (drawn as ignore regions, left out of matching). The file's problems for
    this image are listed: dropped annotations as warnings, repaired ones (clamped to the image) as notes. When the
    entry's size differs from the image's, a note says so and the boxes are clipped to the image.

    Raises:
        ValueError: no usable image of that name in the file (the message gives a few of its names).
    """
    index = ds.index_of(file_name)
    want = PurePosixPath(str(file_name).replace("\\", "/")).name
    if index is None:
        sample = ", ".join(ds.file_names[:5]) or "none"
        raise ValueError(f"no usable image named {want!r} in the COCO file ({ds.num_images} images; e.g. {sample})")
    ann = ds.image_annotations(index)
    notes = []
    entry_hw = (int(ds.heights[index]), int(ds.widths[index]))
    if entry_hw != (height, width):
        notes.append(f"the COCO entry says {entry_hw[1]}x{entry_hw[0]} but the image is {width}x{height}")
    if len(ann.crowd_xyxy):
        crowd = len(ann.crowd_xyxy)
        notes.append(f"{crowd} crowd region(s): drawn hatched, left out of matching as torchvision's references do")
    image_id = ds.image_ids[index]
    rows = ds.problems[(ds.problems["image_id"] == image_id).fillna(False).astype(bool)]
    problems = list(zip(rows["severity"], rows["annotation_id"], rows["message"], strict=True))
    warnings = [f"annotation {a}: {msg}" for sev, a, msg in problems if sev == "error"]  # dropped
    notes += [f"annotation {a}: {msg}" for sev, a, msg in problems if sev != "error"]  # repaired
    classes = [ds.category_name(c) for c in ann.category_ids.tolist()]
    names = [f"annotation {a}" for a in ann.ann_ids.tolist()]
    out = sanitize_boxes(ann.boxes_xyxy, classes, width, height, names=names, notes=notes, warnings=warnings)
    crowd = np.clip(ann.crowd_xyxy, 0, np.array([width, height, width, height], np.float32))
    return replace(out, crowd=crowd[(crowd[:, 2] > crowd[:, 0]) & (crowd[:, 3] > crowd[:, 1])])


def boxes_from_voc(data: bytes, width: int, height: int, *, name: str = "the XML") -> BoxSet:
    """The boxes of one Pascal VOC annotation file, read by the VOC reader's parser
    (:func:`explorer.dataset.voc.parse_voc_xml`: VOC's 1-based corners as ``[xmin - 1, ymin - 1, xmax, ymax]``,
    DOCTYPE and ENTITY refused). ``difficult`` objects are ignore regions, as the dataset reader keeps them: they go
    to :attr:`BoxSet.crowd` (hatched, left out of matching), like COCO crowd boxes. Unusable objects are warnings;
    a ``<size>`` other than the image's is a note (the boxes are clipped to the image).

    Example:
        >>> xml = (b"<annotation><object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin>"
        ...        b"<ymin>1</ymin><xmax>8</xmax><ymax>8</ymax></bndbox></object></annotation>")
        >>> bs = boxes_from_voc(xml, 10, 10)
        >>> len(bs), bs.crowd.tolist()
        (0, [[0.0, 0.0, 8.0, 8.0]])

    Raises:
        ValueError: not well-formed XML, a root other than ``<annotation>``, a DOCTYPE or ENTITY declaration.
    """
    try:
        record = parse_voc_xml(data, name)
    except expat.ExpatError as err:
        raise ValueError(f"{name} is not well-formed XML ({err})") from None
    notes = []
    if record.width is not None and record.height is not None and (record.width, record.height) != (width, height):
        notes.append(f"the XML's <size> says {record.width}x{record.height} but the image is {width}x{height}")
    usable = [(j, o) for j, o in enumerate(record.objects, start=1) if not o.problem]
    warnings = [f"object {j} {o.problem}; skipped" for j, o in enumerate(record.objects, start=1) if o.problem]
    plain = [(j, o) for j, o in usable if not o.difficult]
    difficult = [o.box for _, o in usable if o.difficult]
    if difficult:
        notes.append(
            f"{len(difficult)} difficult object(s): ignore regions, drawn hatched and left out of matching as COCO "
            "crowd boxes are"
        )
    out = sanitize_boxes(
        [o.box for _, o in plain], [o.name for _, o in plain], width, height,
        names=[f"object {j} ({o.name})" for j, o in plain], notes=notes, warnings=warnings,
    )  # fmt: skip
    crowd = np.clip(np.asarray(difficult, np.float32).reshape(-1, 4), 0, np.float32([width, height, width, height]))
    return replace(out, crowd=crowd[(crowd[:, 2] > crowd[:, 0]) & (crowd[:, 3] > crowd[:, 1])])


def boxes_from_rows(rows: Sequence[Mapping], width: int, height: int) -> BoxSet:
    """Boxes from table rows with ``x1, y1, x2, y2`` (and optional ``label``); rows with blanks are skipped.

    Rows left completely empty (a freshly added table row) are ignored silently.
    """
    boxes, classes, names, warnings, skipped = [], [], [], [], []
    for k, row in enumerate(rows):
        vals = [row.get(c) for c in TABLE_COLUMNS[:4]]
        if all(v is None or (isinstance(v, float) and np.isnan(v)) for v in vals):
            continue
        try:
            nums = [_row_float(v) for v in vals]
        except (TypeError, ValueError):
            warnings.append(f"row {k + 1}: skipped, x1, y1, x2, y2 must all be numbers, got {vals}")
            skipped.append((k, "missing or non-numeric coordinate"))
            continue
        boxes.append(nums)
        label = row.get("label")
        classes.append("object" if label is None or (isinstance(label, float) and np.isnan(label)) else str(label))
        names.append(f"row {k + 1}")
    return sanitize_boxes(boxes, classes, width, height, names=names, warnings=warnings, skipped=skipped)


def _row_float(value: object) -> float:
    """A table cell as float; an integer beyond float64 (10**400) is infinite (skipped as non-finite)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def boxes_from_scene(annotations: Sequence[Mapping], width: int, height: int, class_names: Sequence[str]) -> BoxSet:
    """Boxes of a synthetic scene (COCO-style dicts with xywh ``bbox`` and 1-based ``category_id``)."""
    boxes, ids = scene_targets(annotations)
    classes = [class_names[c - 1] if 0 < c <= len(class_names) else str(c) for c in ids.tolist()]
    return sanitize_boxes(boxes, classes, width, height)
