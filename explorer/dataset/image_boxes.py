"""Ground-truth box input for the Anchor lab: COCO JSON (matched by file name), YOLO .txt, table rows.

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
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from explorer.dataset.coco import parse_json_lean
from explorer.dataset.coco_problems import as_float, image_side_problem
from explorer.synthetic import scene_targets

TABLE_COLUMNS: tuple[str, ...] = ("x1", "y1", "x2", "y2", "label")

#: Boxes that overshoot the image by at most this much (px) are clipped without a notice: YOLO files keep about
#: six decimals, so a box drawn to the image edge comes back a few 1e-4 px outside it.
CLIP_NOTICE_PX = 0.05


@dataclass(frozen=True)
class BoxSet:
    """Validated GT boxes of one image.

    Attributes:
        boxes: (M, 4) float32 xyxy in original image pixels, clipped to the image, positive width and height.
        classes: M class names.
        notes: informational notices (boxes clipped to the image, size mismatches).
        warnings: what was rejected and why (skipped boxes, bad lines named by line number).
        skipped: the rejected entries as ``(source index or line, reason)``.
    """

    boxes: np.ndarray
    classes: list[str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

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
    return BoxSet(boxes, keep_cls, out_notes, out_warn, out_skipped)


def parse_yolo(text: str | bytes, width: int, height: int, *, class_names: Sequence[str] | None = None) -> BoxSet:
    """Parse a YOLO label file: one ``class cx cy w h`` line per box, coordinates normalised to [0, 1].

    Blank lines and ``#`` comments are ignored; an optional 6th value (a confidence) is ignored. Bad lines are
    skipped and named in :attr:`BoxSet.warnings` by line number.

    Raises:
        ValueError: if the bytes are not UTF-8 text.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ValueError(f"the YOLO file is not UTF-8 text: {err}") from err
    boxes, classes, names, warnings, skipped = [], [], [], [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (5, 6):
            warnings.append(f"line {lineno}: expected 5 values (class cx cy w h), got {len(parts)}")
            skipped.append((lineno, "wrong number of values"))
            continue
        try:
            vals = [float(p) for p in parts[1:5]]
        except ValueError:
            bad = next(p for p in parts[1:5] if not _is_float(p))
            warnings.append(f"line {lineno}: not a number: {bad}")
            skipped.append((lineno, "not a number"))
            continue
        cls_token = parts[0]
        cid = _class_id(cls_token)
        if cid is None:
            warnings.append(f"line {lineno}: class must be an integer id, got {cls_token}")
            skipped.append((lineno, "bad class id"))
            continue
        cx, cy, w, h = vals
        if not all(np.isfinite(vals)):
            warnings.append(f"line {lineno}: non-finite value")
            skipped.append((lineno, "non-finite"))
            continue
        if max(abs(cx), abs(cy), abs(w), abs(h)) > 2.0:
            warnings.append(
                f"line {lineno}: values look like pixels, YOLO expects 0..1 (got {cx:g} {cy:g} {w:g} {h:g})"
            )
            skipped.append((lineno, "not normalised"))
            continue
        name = class_names[cid] if class_names is not None and 0 <= cid < len(class_names) else str(cid)
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        classes.append(name)
        names.append(f"line {lineno}")
    return sanitize_boxes(boxes, classes, width, height, names=names, warnings=warnings, skipped=skipped)


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _class_id(token: str) -> int | None:
    """A YOLO class id: an integer, also written as an integral float (``1.0``, ``1e2``); None otherwise."""
    try:
        value = float(token)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def load_coco(data: bytes | str | Mapping) -> dict:
    """Load and minimally validate a COCO detection JSON (``images``, ``annotations``; ``categories`` optional).

    Bytes are parsed with :func:`explorer.dataset.coco.parse_json_lean`: polygon segmentations, most of a COCO file, are
    never built as Python objects.

    Raises:
        ValueError: not JSON, or the structure is not COCO detection.
    """
    if isinstance(data, Mapping):
        coco = dict(data)
    else:
        try:
            coco = parse_json_lean(data.encode() if isinstance(data, str) else bytes(data))
        except ValueError as err:
            raise ValueError(f"the annotation file is not valid JSON: {err}") from err
    if not isinstance(coco, dict):
        raise ValueError(f"COCO JSON must be an object at the top level, got {type(coco).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise ValueError(f"COCO JSON needs a list under {key!r}")
    return coco


def coco_file_names(coco: Mapping) -> list[str]:
    """The ``file_name`` of every image entry."""
    return [str(im.get("file_name", "")) for im in coco.get("images", []) if isinstance(im, Mapping)]


def boxes_from_coco(coco: Mapping, file_name: str, width: int, height: int) -> BoxSet:
    """The boxes of the image whose ``file_name`` matches (same base name; case-insensitive as a fallback).

    COCO ``bbox`` is ``[x, y, w, h]`` in pixels. Crowd boxes (``iscrowd=1``) are skipped with a notice, as the
    reference loaders do. Annotations with a malformed bbox are listed and skipped.

    Raises:
        ValueError: if no image entry matches ``file_name``, or its ``width`` / ``height`` is present but not a
            whole number of pixels (NaN, Infinity, 1e30: the file is corrupt for this image).
    """
    want = PurePath(file_name).name
    images = [im for im in coco.get("images", []) if isinstance(im, Mapping)]
    match = [im for im in images if PurePath(str(im.get("file_name", ""))).name == want]
    if not match:
        match = [im for im in images if PurePath(str(im.get("file_name", ""))).name.lower() == want.lower()]
    if not match:
        sample = ", ".join(coco_file_names(coco)[:5]) or "none"
        raise ValueError(f"no image named {want!r} in the COCO file ({len(images)} images; e.g. {sample})")
    entry = match[0]
    notes = _size_notes(entry, want, width, height)
    cats = {
        c["id"]: str(c.get("name", c["id"]))
        for c in coco.get("categories", [])
        if isinstance(c, Mapping) and type(c.get("id")) in (int, str)
    }
    boxes, classes, names, warnings, skipped = [], [], [], [], []
    for k, ann in enumerate(coco.get("annotations", [])):
        if not isinstance(ann, Mapping) or ann.get("image_id") != entry.get("id"):
            continue
        label = f"annotation {ann.get('id', k)}"
        bbox = ann.get("bbox")
        if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(type(v) in (int, float) for v in bbox):
            warnings.append(f"{label}: skipped, bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
            skipped.append((k, "malformed bbox"))
            continue
        if ann.get("iscrowd", 0):
            warnings.append(f"{label}: crowd region skipped")
            skipped.append((k, "iscrowd"))
            continue
        x, y, w, h = map(as_float, bbox)  # 10**400 -> inf: skipped below as non-finite
        boxes.append([x, y, x + w, y + h])
        cid = ann.get("category_id")
        classes.append(cats.get(cid, str(cid)) if type(cid) in (int, str) else f"category {type(cid).__name__}")
        names.append(label)
    return sanitize_boxes(boxes, classes, width, height, names=names, notes=notes, warnings=warnings, skipped=skipped)


def _size_notes(entry: Mapping, name: str, width: int, height: int) -> list[str]:
    """A notice when the COCO entry's size differs from the image's.

    Raises:
        ValueError: the entry's width or height is present but not a whole number in 1..100,000 (NaN, Infinity).
    """
    ew, eh = entry.get("width"), entry.get("height")
    for key, value in (("width", ew), ("height", eh)):
        why = None if value is None else image_side_problem(value)
        if why is not None:
            raise ValueError(f"the COCO entry of {name!r} has an invalid {key}: {why}")
    if ew is not None and eh is not None and (int(ew), int(eh)) != (width, height):
        return [f"the COCO entry says {int(ew)}x{int(eh)} but the image is {width}x{height}"]
    return []


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
