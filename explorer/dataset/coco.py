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

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from explorer import settings
from explorer.dataset.coco_annotations import parse_annotations
from explorer.dataset.coco_columns import CocoColumns, annotation_columns, decode_columns, parse_annotation_columns
from explorer.dataset.coco_json import DEFAULT_MAX_BYTES, CocoFormatError, parse_json_lean, read_bytes
from explorer.dataset.coco_problems import MISSING, SEVERITIES, Problems
from explorer.dataset.coco_records import (
    Annotations,
    ImageRecords,
    id_array,
    image_columns,
    parse_categories,
    parse_images,
)
from explorer.dataset.coco_stream import stream_columns
from explorer.dataset.memory import megabytes, memory_refusal, release_free_memory

#: COCO's area ranges (``COCOeval``): small < 32², medium < 96², large otherwise, in original-image pixels².
AREA_SMALL = 32.0**2
AREA_MEDIUM = 96.0**2
SIZE_BUCKETS: tuple[str, ...] = ("small", "medium", "large")


@dataclass(frozen=True)
class ImageAnnotations:
    """One image's annotations from :meth:`CocoDataset.image_annotations`, at the original scale.

    Attributes:
        boxes_xyxy: (K, 4) float32 non-crowd boxes (clamped to the image); category_ids: (K,) int64; ann_ids: (K,).
        crowd_xyxy: (C, 4) float32 crowd regions (``iscrowd = 1``); crowd_category_ids: (C,) int64.
    """

    boxes_xyxy: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    crowd_xyxy: np.ndarray
    crowd_category_ids: np.ndarray


def _base_name(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


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
        image_root: the folder that ``file_names`` are relative to, when the reader knows it ("" otherwise).
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
    image_root: str = ""

    @property
    def num_images(self) -> int:
        return len(self.heights)

    @property
    def num_annotations(self) -> int:
        return len(self.ann_ids)

    def annotations_of(self, index: int) -> slice:
        """Rows of image ``index`` (0-based position, not id) in the annotation arrays."""
        return slice(int(self.ann_offsets[index]), int(self.ann_offsets[index + 1]))

    def index_of(self, file_name: str) -> int | None:
        """Position of the image named ``file_name``, or None: the full ``file_name`` first, then the base name
        (COCO files often store ``folder/name.jpg``; uploads carry the base name), then the base name ignoring
        case. The first image in file order wins on duplicates."""
        full, base, folded = self._name_lookup
        name = str(file_name)
        short = _base_name(name)
        for table, key in ((full, name), (base, short), (folded, short.casefold())):
            if key in table:
                return table[key]
        return None

    @cached_property
    def _name_lookup(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        full: dict[str, int] = {}
        base: dict[str, int] = {}
        folded: dict[str, int] = {}
        for i, name in enumerate(self.file_names):
            short = _base_name(name)
            full.setdefault(name, i)
            base.setdefault(short, i)
            folded.setdefault(short.casefold(), i)
        return full, base, folded

    def image_annotations(self, index: int) -> ImageAnnotations:
        """The box set of image ``index``: non-crowd boxes (matched, drawn as objects) and crowd regions (left out of
        matching as torchvision's references do, drawn as ignore regions), file order within each."""
        rows = self.annotations_of(index)
        crowd = self.iscrowd[rows]
        boxes, cats, ids = self.boxes_xyxy[rows], self.ann_category[rows], self.ann_ids[rows]
        return ImageAnnotations(
            boxes_xyxy=boxes[~crowd].astype(np.float32),
            category_ids=cats[~crowd].astype(np.int64),
            ann_ids=ids[~crowd],
            crowd_xyxy=boxes[crowd].astype(np.float32),
            crowd_category_ids=cats[crowd].astype(np.int64),
        )

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


def load_coco(
    source: bytes | bytearray | memoryview | str | os.PathLike | dict,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
    memory_budget: int | None = None,
) -> CocoDataset:
    """Load and validate a COCO instances file.

    Args:
        source: the file's bytes, a path to it, or an already-parsed COCO dict.
        max_bytes: refuse larger files (``CocoFormatError``); files on disk of :data:`STREAM_MIN_BYTES` or more
            are read in blocks, never whole, and only the memory budget applies to them.
        name: display name (default: the file name).
        memory_budget: refuse, before reading it, a file whose load would need more memory (bytes; default
            ``settings.limits().dataset_memory_bytes``, ``FOCALSCOPE_DATASET_MEMORY_MB``).

    Returns:
        A :class:`CocoDataset` with the usable records and a problems table (severity error = record dropped,
        warning = kept but repaired or suspicious, info = noted).

    Raises:
        CocoFormatError: (a ``ValueError``) not JSON, not a JSON object, no ``images`` list; too large for the
            byte cap or the memory budget (with the size and the limit).
    """
    budget = settings.limits().dataset_memory_bytes if memory_budget is None else memory_budget
    if isinstance(source, dict):
        data, default_name = source, "COCO dict"
    elif (streamed := _streamed_file(source, budget)) is not None:
        columns = stream_columns(streamed)
        release_free_memory()  # the freed records of the blocks (BENCHMARKS.md, "Loading at scale")
        if columns is None:
            raise CocoFormatError(
                f"{streamed.name} ({megabytes(streamed.stat().st_size)}) does not fit the columnar reader (a record of "
                "an unexpected shape) and is too large for the dict reader: "
                + memory_refusal(streamed.stat().st_size, DICT_BYTES_PER_BYTE, budget)
            )
        dataset = _build_columns(columns, name or streamed.name)
        del columns
        release_free_memory()
        return dataset
    else:
        raw, default_name = read_bytes(source, max_bytes)
        check_memory(len(raw), COLUMNS_BYTES_PER_BYTE, budget, default_name)
        columns = decode_columns(raw)
        if columns is not None:
            del raw
            return _build_columns(columns, name or default_name)
        check_memory(len(raw), DICT_BYTES_PER_BYTE, budget, default_name)
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


#: Peak memory per byte of file (BENCHMARKS.md, "Loading at scale"): the whole-file columnar reader (bytes + typed
#: records + columns: 943 MiB for the 448 MB COCO-train-scale file, 2.2x), the dict reader (a dict per record: the
#: stdlib parser of the whole COCO-train-scale file took 7.6x, pycocotools more than 2.2x of the Objects365-scale
#: file before it ran out of its 8 GB), the streamed columnar reader (columns only: 3,922 MiB for the 3,857 MB
#: Objects365-scale file, 1.07x).
COLUMNS_BYTES_PER_BYTE = 2.2
DICT_BYTES_PER_BYTE = 8.0
STREAMED_BYTES_PER_BYTE = 1.1
#: Files (plain JSON, on disk) at least this large are read in blocks (:mod:`explorer.dataset.coco_stream`).
STREAM_MIN_BYTES = 1_000_000_000


def check_memory(size: int, per_byte: float, budget: int, name: str) -> None:
    """Refuse, before reading it, a file whose load would need more than ``budget`` bytes of memory.

    Raises:
        CocoFormatError: with the file's size, the estimate and the budget.

    Example:
        >>> check_memory(3_000_000_000, 0.8, 4 << 30, "objects365.json")  # 2.4 GB of 4.3 GB: fine
        >>> check_memory(3_000_000_000, 2.2, 4 << 30, "objects365.json")
        Traceback (most recent call last):
        ...
        explorer.dataset.coco_json.CocoFormatError: objects365.json is 3000 MB: loading it needs about 6600 MB \
of memory, over this server's budget of 4295 MB (FOCALSCOPE_DATASET_MEMORY_MB)
    """
    if size * per_byte > budget:
        raise CocoFormatError(f"{name} is {megabytes(size)}: {memory_refusal(size, per_byte, budget)}")


def _streamed_file(source: object, budget: int) -> Path | None:
    """The path of a file to read in blocks (plain JSON on disk, at least :data:`STREAM_MIN_BYTES`), checked
    against the memory budget; None for anything else."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    if not path.is_file() or path.stat().st_size < STREAM_MIN_BYTES:
        return None
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            return None  # gzip: read whole, under the byte cap
    check_memory(path.stat().st_size, STREAMED_BYTES_PER_BYTE, budget, path.name)
    return path


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
    return assemble(images, kept, problems.frame(), name, annotations_in_file=len(anns))


def _build_columns(cols: CocoColumns, name: str) -> CocoDataset:
    """:func:`_build` for a file read as columns (:mod:`explorer.dataset.coco_columns`): the same checks, the same
    problems in the same order."""
    problems = Problems()
    images = image_columns(cols.image_ids, cols.widths, cols.heights, cols.file_names, problems)
    cats = parse_categories({} if cols.categories is None else {"categories": cols.categories}, problems)
    anns = cols.annotations
    if anns is None:
        problems.add("warning", "missing_key", "no 'annotations' list: every image is treated as empty")
        anns = annotation_columns([])
    kept = parse_annotation_columns(anns, images, cats, problems)
    return assemble(images, kept, problems.frame(), name, annotations_in_file=len(anns.ids))


def assemble(
    images: ImageRecords, kept: Annotations, problems: pd.DataFrame, name: str, *, annotations_in_file: int
) -> CocoDataset:
    """The :class:`CocoDataset` of checked records (also the last step of the YOLO and VOC readers)."""
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
