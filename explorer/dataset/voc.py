"""Pascal VOC datasets (``Annotations/*.xml``, ``JPEGImages/``, optional ``ImageSets/Main/<split>.txt``) read into
the one dataset type, :class:`~explorer.dataset.coco.CocoDataset`.

Coordinates: VOC's ``bndbox`` holds 1-based pixel indices, inclusive (``xmin = 1, xmax = W`` is the whole row).
As detectron2's ``load_voc_instances`` (``detectron2/data/datasets/pascal_voc.py``) does, the box is
``[xmin - 1, ymin - 1, xmax, ymax]`` in continuous pixel coordinates (width ``xmax - xmin + 1``, VOC's own area
rule), read as floats (never truncated), computed in float64 and rounded to float32 once. mmdet 3's
``XMLDataset`` truncates to integers and subtracts 1 from all four (a box one pixel narrower); torchvision's
``VOCDetection`` returns the raw XML and chooses nothing. The converter writes ``xmin = x1 + 1``, ``xmax = x2``,
so a dataset converted to VOC reads back to the same float32 boxes.

``difficult`` objects are ignore regions: with ``difficult_as_crowd=True`` (the default) they are kept with
``iscrowd = 1``, left out of matching and shown hatched, as COCO crowd boxes are (mmdet flags them
``ignore_flag``); with ``False`` they are ordinary boxes. Class names are the sorted set of names found, or the
given ``classes`` (a name outside it is a problem row); category ids are 1..C in that order (COCO's convention).
The image size is the XML's ``<size>``; when the image is in ``JPEGImages/`` its header is read too (Ultralytics'
EXIF rule, :mod:`explorer.dataset.image_headers`) and a different size is a problem row (the XML's is kept); a
missing ``<size>`` is taken from the image.

XML is parsed by expat with every DOCTYPE and ENTITY declaration refused (the billion-laughs and external-entity
attacks need one), since defusedxml is not a dependency; a file that is not XML is a problem row, a root element
other than ``<annotation>`` a ``ValueError`` (not a VOC dataset).

Example:
    >>> parse_voc_xml(b"<annotation><size><width>64</width><height>48</height></size><object><name>cat</name>"
    ...               b"<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>"
    ...               b"</annotation>", "a.xml").objects
    [VocObject(name='cat', difficult=False, box=(0.0, 1.0, 10.0, 20.0), problem='')]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.parsers import expat

import numpy as np

from explorer.dataset.box_records import BoxTable, ImageTable, build_dataset
from explorer.dataset.coco import CocoDataset
from explorer.dataset.coco_problems import Problems, image_side_problem
from explorer.dataset.image_headers import image_sizes
from explorer.dataset.image_stores import check_inside

#: Largest annotation XML read (bytes); a VOC file is about 1 KB.
MAX_XML_BYTES = 10_000_000


class XmlRefused(ValueError):
    """The XML declares a DOCTYPE or an ENTITY (refused: entity expansion can exhaust memory)."""


@dataclass
class VocObject:
    """One ``<object>``: its name, difficult flag, ``(x1, y1, x2, y2)`` (VOC's 1-based corners converted; NaN when
    unusable) and why it is unusable ("" when it is usable)."""

    name: str
    difficult: bool
    box: tuple[float, float, float, float]
    problem: str = ""


@dataclass
class VocRecord:
    """One annotation file: ``filename``, size (None when absent or invalid) and objects."""

    filename: str
    width: int | None
    height: int | None
    objects: list[VocObject] = field(default_factory=list)


def safe_xml(data: bytes, name: str) -> ET.Element:
    """Parse XML with expat into an ElementTree element, refusing DOCTYPE and ENTITY declarations.

    Raises:
        XmlRefused: (a ``ValueError``) a declaration was found; expat.ExpatError: not well-formed XML.
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(what: str) -> Any:
        def handler(*_: Any) -> None:
            raise XmlRefused(f"{name} declares an XML {what}: refused (entity expansion can exhaust memory)")

        return handler

    parser.StartDoctypeDeclHandler = refuse("DOCTYPE")
    parser.EntityDeclHandler = refuse("ENTITY")
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(data, True)
    return builder.close()


def _text(elem: ET.Element | None, tag: str) -> str | None:
    child = elem.find(tag) if elem is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


def _side(text: str | None) -> int | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return None if value is None or image_side_problem(value) is not None else int(value)


def _object(obj: ET.Element) -> VocObject:
    name = _text(obj, "name") or ""
    flag = _text(obj, "difficult")
    try:
        difficult = flag is not None and float(flag) != 0
    except ValueError:
        difficult = False
    nan = (float("nan"),) * 4
    if not name:
        return VocObject(name, difficult, nan, "has no <name>")
    bnd = obj.find("bndbox")
    values = [_text(bnd, k) for k in ("xmin", "ymin", "xmax", "ymax")]
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return VocObject(name, difficult, nan, f"has no usable <bndbox> (xmin, ymin, xmax, ymax: {values})")
    return VocObject(name, difficult, (xmin - 1.0, ymin - 1.0, xmax, ymax))


def parse_voc_xml(data: bytes, name: str) -> VocRecord:
    """One VOC annotation file.

    Raises:
        ValueError: the root element is not ``<annotation>``, or a DOCTYPE/ENTITY is declared.
        expat.ExpatError: not well-formed XML.
    """
    root = safe_xml(data, name)
    if root.tag != "annotation":
        raise ValueError(f"{name} is not a Pascal VOC annotation: its root element is <{root.tag}>, not <annotation>")
    size = root.find("size")
    return VocRecord(
        filename=_text(root, "filename") or "",
        width=_side(_text(size, "width")),
        height=_side(_text(size, "height")),
        objects=[_object(o) for o in root.findall("object")],
    )


def voc_splits(path: Path) -> list[str]:
    """The splits of a VOC folder: the lists in ``ImageSets/Main/`` that are not per-class (``trainval.txt``, not
    ``cat_trainval.txt``), sorted."""
    sets = path / "ImageSets" / "Main"
    return sorted(p.stem for p in sets.glob("*.txt") if "_" not in p.stem) if sets.is_dir() else []


def voc_files(path: Path, split: str | None, guard: Path | None = None) -> tuple[Path, list[Path], str]:
    """``(root, annotation files, display name)`` of a VOC folder (or of one .xml file); with ``guard``, a split
    list outside it is a ``ValueError`` (the files listed are checked by :func:`load_voc`)."""
    if path.is_file():
        root = path.parent.parent if path.parent.name == "Annotations" else path.parent
        return root, [path], path.name
    ann = path / "Annotations"
    if not ann.is_dir():
        raise ValueError(f"{path} has no Annotations/ folder (a Pascal VOC dataset has Annotations/*.xml)")
    if split is None:
        return path, sorted(ann.glob("*.xml")), path.name
    sets = path / "ImageSets" / "Main"
    listed = sets / f"{split}.txt"
    if not listed.is_file():
        raise ValueError(f"{path} has no ImageSets/Main/{split}.txt (splits: {', '.join(voc_splits(path)) or 'none'})")
    check_inside(listed, guard, "the split list")
    if listed.stat().st_size > MAX_XML_BYTES:
        raise ValueError(f"{listed} is over the {MAX_XML_BYTES:,} byte limit")
    ids = [line.split()[0] for line in listed.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return path, [ann / f"{i}.xml" for i in ids], f"{path.name} ({split})"


def _read_records(files: list[Path], root: Path, problems: Problems, strict: bool) -> list[tuple[Path, VocRecord]]:
    """The parsed files; one that cannot be read or parsed is a problem row (a ``ValueError`` when ``strict``:
    the one file given)."""
    out = []
    for xml in files:
        shown = _relative(xml, root)
        try:
            if xml.stat().st_size > MAX_XML_BYTES:
                raise ValueError(f"over the {MAX_XML_BYTES:,} byte limit")
            data = xml.read_bytes()
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            if strict:
                raise ValueError(f"{xml} cannot be read ({reason})") from None
            problems.add("error", "invalid_file", f"{shown}: cannot be read ({reason}); left out")
            continue
        try:
            out.append((xml, parse_voc_xml(data, str(xml))))
        except expat.ExpatError as err:
            if strict:
                raise ValueError(f"{xml} is not well-formed XML ({err})") from None
            problems.add("error", "invalid_xml", f"{shown}: not well-formed XML ({err}); left out")
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _image_path(root: Path, xml: Path, rec: VocRecord) -> Path:
    folder = root / "JPEGImages"
    bare = rec.filename not in ("", ".", "..") and not any(c in rec.filename for c in "/\\")
    if bare and (folder / rec.filename).is_file():  # a bare name: never a path out of the folder
        return folder / rec.filename
    return folder / f"{xml.stem}.jpg"


def _images(
    root: Path, records: list[tuple[Path, VocRecord]], problems: Problems, workers: int | None
) -> tuple[ImageTable, list[VocRecord]]:
    """The usable images (size from the XML, checked against the image header when the image is there)."""
    paths = [_image_path(root, xml, rec) for xml, rec in records]
    present = [k for k, p in enumerate(paths) if p.is_file()]
    sizes = image_sizes([paths[k] for k in present], workers)
    header: dict[int, tuple[int, int] | str] = dict(zip(present, sizes, strict=True))
    table = ImageTable([], [], [], [], images_in_files=len(records))
    kept: list[VocRecord] = []
    for k, (xml, rec) in enumerate(records):
        shown, found = _relative(xml, root), header.get(k)
        size = (rec.width, rec.height)
        if None in size:
            if not isinstance(found, tuple):
                why = "the image is missing" if found is None else found
                problems.add("error", "image_size", f"{shown}: no valid <size> and {why}; left out")
                continue
            problems.add("warning", "image_size", f"{shown}: no valid <size>; {found[0]}x{found[1]} from the image")
            size = found
        elif isinstance(found, tuple) and found != size:
            problems.add(
                "warning",
                "size_mismatch",
                f"{shown}: <size> says {size[0]}x{size[1]} but {paths[k].name} is {found[0]}x{found[1]}; "
                "the XML's size is used",
                image_id=len(kept) + 1,
            )
        table.file_names.append(paths[k].name if paths[k].is_file() else rec.filename or paths[k].name)
        table.widths.append(int(size[0]))  # type: ignore[arg-type]
        table.heights.append(int(size[1]))  # type: ignore[arg-type]
        table.sources.append(shown)
        kept.append(rec)
    return table, kept


def load_voc(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    classes: list[str] | None = None,
    difficult_as_crowd: bool = True,
    workers: int | None = None,
    name: str | None = None,
    root: str | os.PathLike | None = None,
) -> CocoDataset:
    """Read a Pascal VOC dataset (see the module docstring) into a :class:`CocoDataset`.

    Args:
        path: the dataset folder (with ``Annotations/``) or one annotation .xml.
        split: a list in ``ImageSets/Main/`` (``train``, ``val``, ``trainval``, ``test``); None: every XML.
        classes: the class names in id order (1..C); None: the sorted names found.
        difficult_as_crowd: difficult objects as crowd (ignore) regions; workers: threads for image headers.
        root: a folder nothing may be read outside of (the operator's data root, an unpacked upload): a split
            list, an annotation file (a listed id with ``..``, a symlink) or an image outside it is a
            ``ValueError`` naming it. None: no such check.

    Raises:
        ValueError: not a VOC folder, an unknown split, an XML whose root is not ``<annotation>``, a DOCTYPE.
    """
    p = Path(path)
    guard = Path(root) if root is not None else None
    root_dir, files, shown = voc_files(check_inside(p, guard, "the dataset"), split, guard)
    if guard is not None:
        for file in (*files, root_dir / "JPEGImages", *(root_dir / "JPEGImages").glob("*")):
            check_inside(file, guard, "the annotation or image")
    problems = Problems()
    for xml in files:
        if not xml.is_file():
            problems.add("error", "missing_annotation", f"{_relative(xml, root_dir)} is listed but missing; left out")
    parsed = _read_records([f for f in files if f.is_file()], root_dir, problems, strict=p.is_file())
    table, records = _images(root_dir, parsed, problems, workers)
    found = sorted({o.name for r in records for o in r.objects if not o.problem})
    names = list(classes) if classes is not None else found
    ids = {n: k + 1 for k, n in enumerate(names)}
    image, category, boxes, line, crowd = [], [], [], [], []
    for k, rec in enumerate(records):
        for j, obj in enumerate(rec.objects, start=1):
            where = f"{table.sources[k]} object {j}"
            if obj.problem or obj.name not in ids:
                why = obj.problem or f"has the class {obj.name!r}, not in the given classes"
                problems.add("error", "invalid_object", f"{where} {why}; dropped", image_id=k + 1)
                continue
            image.append(k)
            category.append(ids[obj.name])
            boxes.append(obj.box)
            line.append(j)
            crowd.append(obj.difficult and difficult_as_crowd)
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4).astype(np.float32)
    return build_dataset(
        table,
        BoxTable(image=image, category=category, xyxy=xyxy, line=line, iscrowd=crowd),
        {k + 1: n for k, n in enumerate(names)},
        problems,
        name=name or shown,
        unit="object",
        image_root=str(root_dir / "JPEGImages"),
        crowd_note="difficult object(s) (VOC <difficult>1</difficult>)",
    )
