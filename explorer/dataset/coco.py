"""COCO instances loading and validation: problems are reported as a table, not as crashes.

:func:`load_coco` reads a COCO "instances" JSON (bytes or a path), keeps only what dataset diagnostics need
(images, categories and per-annotation id / image id / category id / bbox / iscrowd / area) and checks every
record. A record that cannot be used is dropped and reported; a record that can be repaired (a box that sticks out
of its image, a missing ``iscrowd``) is repaired and reported. Only input that is not a COCO dict at all (not JSON,
JSON that Python cannot read: nested hundreds of levels deep or with a number of more than 4,300 digits; not an
object, no ``images`` list) raises :class:`CocoFormatError`, a ``ValueError``. Values that do not fit the arrays are
per-record problems: ids beyond int64, numbers beyond float64 (``1e400``, ``10**400``), image sides that are not
whole numbers in 1..:data:`~explorer.dataset.coco_problems.MAX_IMAGE_SIDE`, boxes beyond float32. The record checks
live in :mod:`explorer.dataset.coco_records` (images, categories) and :mod:`explorer.dataset.coco_annotations`; the
problems table in :mod:`explorer.dataset.coco_problems`.

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
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorer.dataset.coco_annotations import Annotations, parse_annotations
from explorer.dataset.coco_problems import MISSING, SEVERITIES, Problems
from explorer.dataset.coco_records import ImageRecords, id_array, parse_categories, parse_images

#: COCO's area ranges (``COCOeval``): small < 32², medium < 96², large otherwise, in original-image pixels².
AREA_SMALL = 32.0**2
AREA_MEDIUM = 96.0**2
SIZE_BUCKETS: tuple[str, ...] = ("small", "medium", "large")

#: Default cap on the size of an annotation file (bytes).
DEFAULT_MAX_BYTES = 2_000_000_000

# A polygon segmentation value: a list of lists of plain numbers. Only that shape is cut out; anything else (RLE
# dicts, odd formatting) stays and is parsed normally, so a miss costs speed, never correctness.
_POLYGON_SEGMENTATION = re.compile(rb'"segmentation"\s*:\s*\[\s*\[[^\[\]{}"]*\](?:\s*,\s*\[[^\[\]{}"]*\])*\s*\]')


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
    """Check every record of a COCO dict (:mod:`explorer.dataset.coco_records`, ``coco_annotations``)."""
    problems = Problems()
    images = parse_images(data["images"], problems)
    cats = parse_categories(data, problems)
    anns = data.get("annotations", MISSING)
    if anns is MISSING:
        problems.add("warning", "missing_key", "no 'annotations' list: every image is treated as empty")
        anns = []
    elif not isinstance(anns, list):
        problems.add("error", "missing_key", f"'annotations' is a {type(anns).__name__}, not a list; ignored")
        anns = []
    kept = parse_annotations(anns, images, cats, problems)
    return _dataset(images, kept, problems.frame(), name, annotations_in_file=len(anns))


def _dataset(
    images: ImageRecords, kept: Annotations, problems: pd.DataFrame, name: str, *, annotations_in_file: int
) -> CocoDataset:
    counts = {
        "images_in_file": len(images.ids) + len(images.invalid),
        "annotations_in_file": annotations_in_file,
        "annotations_kept": len(kept.ann_ids),
        "crowd_kept": kept.crowd_kept,
        "errors": int((problems["severity"] == "error").sum()),
        "warnings": int((problems["severity"] == "warning").sum()),
    }
    return CocoDataset(
        image_ids=id_array(images.ids),
        file_names=images.file_names,
        heights=images.heights,
        widths=images.widths,
        category_ids=kept.category_ids,
        category_names=kept.category_names,
        ann_ids=kept.ann_ids,
        ann_image=kept.ann_image,
        ann_category=kept.ann_category,
        boxes_xyxy=kept.boxes_xyxy,
        areas=kept.areas,
        iscrowd=kept.iscrowd,
        ann_offsets=kept.ann_offsets,
        problems=problems,
        name=name,
        counts=counts,
    )
