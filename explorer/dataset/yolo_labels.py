"""YOLO label text, line by line: the one parser behind one image's ``.txt`` (``image_boxes.parse_yolo``) and a
whole YOLO dataset (:mod:`explorer.dataset.yolo`).

A line is ``class cx cy w h`` with coordinates normalised to the image (0..1). Blank lines and ``#`` comments are
skipped. A 6th value (a confidence, in a predictions file) is ignored. A segment line, ``class x1 y1 x2 y2 ...``
with at least 3 points (an even number of at least 6 coordinates), is reduced to the bounding box of its points,
as Ultralytics' ``segments2boxes`` does, and counted. A class id may be written as an integral float (``1.0``,
``1e2``: Ultralytics parses labels as floats). Every other line is skipped and named by its number and reason.

Example:
    >>> lines = parse_label_text("0 0.5 0.5 0.2 0.4\\n1 0.1 0.1 0.5 0.1 0.5 0.3\\nx 0.5 0.5 0.1 0.1\\n")
    >>> lines.classes.tolist(), lines.cxcywhn.round(3).tolist(), lines.line_numbers.tolist(), lines.segments
    ([0, 1], [[0.5, 0.5, 0.2, 0.4], [0.3, 0.2, 0.4, 0.2]], [1, 2], [2])
    >>> lines.bad
    [(3, 'class must be a non-negative integer id, got x')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Boxes that overshoot the image by at most this much (px) are clipped without a notice: YOLO files keep about
#: six decimals, so a box drawn to the image edge comes back a few 1e-4 px outside it.
CLIP_NOTICE_PX = 0.05

#: Largest class id accepted (an id beyond it is a broken line, not a class).
MAX_CLASS_ID = 2**31 - 1

#: A coordinate beyond this (in absolute value) is taken for pixels, not a normalised value, and the line skipped.
MAX_NORMALISED = 2.0


@dataclass
class LabelLines:
    """The usable lines of one label file.

    Attributes:
        classes: (N,) int64 class ids; cxcywhn: (N, 4) float64 normalised ``cx cy w h``; line_numbers: (N,) int64
            1-based line of each box.
        segments: line numbers of the segment lines reduced to their bounding box.
        bad: ``(line number, reason)`` of every skipped line.
    """

    classes: np.ndarray
    cxcywhn: np.ndarray
    line_numbers: np.ndarray
    segments: list[int] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)


def decode_label_bytes(data: bytes, name: str = "the YOLO file") -> str:
    """UTF-8 text (a byte-order mark is dropped); ``ValueError`` naming ``name`` when it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not UTF-8 text: {err}") from None


def parse_label_text(text: str) -> LabelLines:
    """Parse the lines of one YOLO label file (see the module docstring for the rules)."""
    classes: list[int] = []
    boxes: list[list[float]] = []
    numbers: list[int] = []
    out = LabelLines(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.int64))
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parsed = _parse_line(line.split())
        if isinstance(parsed, str):
            out.bad.append((lineno, parsed))
            continue
        cid, box, is_segment = parsed
        if is_segment:
            out.segments.append(lineno)
        classes.append(cid)
        boxes.append(box)
        numbers.append(lineno)
    if classes:
        out.classes = np.asarray(classes, np.int64)
        out.cxcywhn = np.asarray(boxes, np.float64).reshape(-1, 4)
        out.line_numbers = np.asarray(numbers, np.int64)
    return out


def _parse_line(parts: list[str]) -> tuple[int, list[float], bool] | str:
    """``(class id, [cx, cy, w, h], is a segment)`` of one line's tokens, or the reason it is skipped."""
    n = len(parts)
    is_segment = n > 6
    if n < 5 or (is_segment and (n - 1) % 2):
        what = "an odd number of segment coordinates" if n > 6 else f"{n} values"
        return f"expected 5 values (class cx cy w h) or a segment (class x1 y1 x2 y2 x3 y3 ...), got {what}"
    try:
        values = [float(p) for p in parts[1 : n if is_segment else 5]]
    except ValueError:
        bad = next(p for p in parts[1:] if not _is_float(p))
        return f"not a number: {bad}"
    cid = class_id(parts[0])
    if cid is None:
        return f"class must be a non-negative integer id, got {parts[0]}"
    if not all(math.isfinite(v) for v in values):
        return "non-finite value"
    if max(abs(v) for v in values) > MAX_NORMALISED:
        shown = " ".join(f"{v:g}" for v in values[:4])
        return f"values look like pixels, YOLO expects 0..1 (got {shown})"
    if not is_segment:
        return cid, values, False
    xs, ys = values[0::2], values[1::2]
    x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
    return cid, [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], True


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def class_id(token: str) -> int | None:
    """A YOLO class id: a non-negative integer up to :data:`MAX_CLASS_ID`, also written as an integral float
    (``1.0``, ``1e2``); None otherwise.

    Example:
        >>> class_id("3"), class_id("1.0"), class_id("1.5"), class_id("-1"), class_id("1e300")
        (3, 1, None, None, None)
    """
    try:
        value = float(token)
    except ValueError:
        return None
    if not (math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_CLASS_ID):
        return None
    return int(value)
