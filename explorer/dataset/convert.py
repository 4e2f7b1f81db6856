"""Writing a loaded dataset as COCO JSON, as a YOLO folder or as a Pascal VOC folder (``python -m explorer convert``).

Every writer takes a :class:`~explorer.dataset.coco.CocoDataset` (so any format converts to any other) and writes
the boxes so that its reader gives back the same float32 boxes: COCO ``bbox`` through
:func:`explorer.boxes.xyxy_to_xywh`, YOLO's normalised ``cx cy w h`` through :func:`explorer.boxes.xyxy_to_cxcywhn`
written with ``repr`` (up to 17 significant digits), VOC's ``bndbox`` as ``xmin = x1 + 1, ymin = y1 + 1,
xmax = x2, ymax = y2`` (the inverse of :mod:`explorer.dataset.voc`'s rule). Each writer checks the read-back in
memory and counts the boxes that would not come back bit for bit (:attr:`ConvertReport.inexact`).

What does not carry over, said in the report: YOLO has no crowd flag, so crowd boxes are left out of a YOLO copy;
YOLO class ids are 0..C-1 in the dataset's category order (category ids are not kept); VOC category ids are
1..C by sorted name when read back. Images are referenced, not copied: a YOLO or VOC folder gets symbolic links to
them (``images/<split>/``, ``JPEGImages/``), which is what Ultralytics' label rule and VOC's layout need; an image
that cannot be found is left out with its boxes and counted. The output folder must be new or empty.

Example:
    >>> import tempfile
    >>> from explorer.dataset.coco import load_coco
    >>> ds = load_coco({"images": [{"id": 1, "width": 64, "height": 48, "file_name": "a.jpg"}],
    ...                 "categories": [{"id": 3, "name": "cat"}],
    ...                 "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20]}]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     report = write_coco(ds, Path(tmp) / "out.json")
    >>> report.images, report.boxes, report.inexact
    (1, 1, 0)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree as ET

import numpy as np
import yaml

from explorer.boxes import cxcywhn_to_xyxy, xywh_to_xyxy, xyxy_to_cxcywhn, xyxy_to_xywh
from explorer.dataset.coco import CocoDataset
from explorer.dataset.formats import add_dataset_arguments

TARGETS: tuple[str, ...] = ("coco", "yolo", "voc")


@dataclass
class ConvertReport:
    """What a writer wrote: images, boxes, boxes left out (crowd boxes in YOLO), images not found (left out),
    boxes that would not read back bit for bit, and where."""

    out: Path
    images: int = 0
    boxes: int = 0
    crowd_left_out: int = 0
    images_missing: int = 0
    inexact: int = 0

    def summary(self) -> str:
        parts = [f"wrote {self.images:,} images and {self.boxes:,} boxes to {self.out}"]
        if self.crowd_left_out:
            parts.append(f"{self.crowd_left_out:,} crowd boxes left out (YOLO has no crowd flag)")
        if self.images_missing:
            parts.append(f"{self.images_missing:,} images not found, left out with their boxes")
        exact = "every box reads back exactly" if not self.inexact else f"{self.inexact:,} boxes read back 1 ulp off"
        return "; ".join([*parts, exact])


def coco_dict(ds: CocoDataset) -> tuple[dict, int]:
    """The COCO dict of a dataset (ids, file names, sizes, categories kept; ``bbox`` from
    :func:`~explorer.boxes.xyxy_to_xywh`), and how many boxes would not read back exactly."""
    xywh = xyxy_to_xywh(ds.boxes_xyxy)
    inexact = int((xywh_to_xyxy(xywh) != ds.boxes_xyxy).any(axis=1).sum())
    image_ids = ds.image_ids.tolist()
    images = [
        {"id": i, "file_name": f, "width": int(w), "height": int(h)}
        for i, f, w, h in zip(image_ids, ds.file_names, ds.widths.tolist(), ds.heights.tolist(), strict=True)
    ]
    annotations = [
        {"id": a, "image_id": image_ids[k], "category_id": c, "bbox": b, "area": area, "iscrowd": int(crowd)}
        for a, k, c, b, area, crowd in zip(
            ds.ann_ids.tolist(),
            ds.ann_image.tolist(),
            ds.ann_category.tolist(),
            xywh.tolist(),
            ds.areas.tolist(),
            ds.iscrowd.tolist(),
            strict=True,
        )
    ]
    categories = [{"id": c, "name": n} for c, n in zip(ds.category_ids.tolist(), ds.category_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}, inexact


def write_coco(ds: CocoDataset, out: Path) -> ConvertReport:
    """Write ``ds`` as a COCO instances JSON (gzip'd when ``out`` ends in ``.gz``)."""
    data, inexact = coco_dict(ds)
    text = json.dumps(data).encode()
    out.write_bytes(gzip.compress(text, mtime=0) if out.name.lower().endswith(".gz") else text)
    return ConvertReport(out, ds.num_images, ds.num_annotations, inexact=inexact)


def _new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} is not empty (or is a file): give a new folder")
    out.mkdir(parents=True, exist_ok=True)


def _image_sources(ds: CocoDataset) -> list[Path | None]:
    """Each image's file (None when it cannot be found): ``image_root / file_name``, or the name as a path."""
    root = Path(ds.image_root) if ds.image_root else None
    out: list[Path | None] = []
    for name in ds.file_names:
        candidates = [Path(name)] if Path(name).is_absolute() else []
        if root is not None and name:
            candidates += [root / name, root / PurePosixPath(name).name]
        out.append(next((p.resolve() for p in candidates if p.is_file()), None))
    return out


def _link_names(ds: CocoDataset) -> list[str]:
    """A flat, unique file name per image: the base name, or the path joined by ``__`` where base names repeat."""
    bases = [PurePosixPath(n.replace("\\", "/")).name or f"{k}.jpg" for k, n in enumerate(ds.file_names)]
    if len(set(bases)) == len(bases):
        return bases
    return [
        "__".join(p for p in PurePosixPath(n.replace("\\", "/")).parts if p not in ("/", "..", ".")) or f"{k}.jpg"
        for k, n in enumerate(ds.file_names)
    ]


def _num(value: float) -> str:
    """A coordinate as text: an integer when it is one, else ``repr`` (round-trips the float64)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_yolo(ds: CocoDataset, out: Path, *, split: str = "train") -> ConvertReport:
    """Write ``ds`` as a YOLO folder: ``data.yaml``, ``labels/<split>/*.txt`` and ``images/<split>/`` links.

    Class ``k`` is the dataset's ``k``-th category (0-based); crowd boxes are left out (YOLO has no crowd flag).
    """
    _new_folder(out)
    (out / "images" / split).mkdir(parents=True)
    (out / "labels" / split).mkdir(parents=True)
    position = {c: k for k, c in enumerate(ds.category_ids.tolist())}
    sources, names = _image_sources(ds), _link_names(ds)
    report = ConvertReport(out)
    keep = ~ds.iscrowd
    report.crowd_left_out = int(ds.iscrowd.sum())
    w_box, h_box = ds.widths[ds.ann_image], ds.heights[ds.ann_image]
    cxcywhn = xyxy_to_cxcywhn(ds.boxes_xyxy, w_box, h_box)
    back = cxcywhn_to_xyxy(cxcywhn, w_box, h_box)
    report.inexact = int(((back != ds.boxes_xyxy).any(axis=1) & keep).sum())
    for k, (source, name) in enumerate(zip(sources, names, strict=True)):
        rows = ds.annotations_of(k)
        if source is None:
            report.images_missing += 1
            continue
        os.symlink(source, out / "images" / split / name)
        lines = [
            f"{position[int(c)]} " + " ".join(repr(float(v)) for v in box)
            for c, box, kept in zip(ds.ann_category[rows], cxcywhn[rows], keep[rows], strict=True)
            if kept
        ]
        (out / "labels" / split / name).with_suffix(".txt").write_text("".join(f"{s}\n" for s in lines))
        report.images += 1
        report.boxes += len(lines)
    data = {"path": str(out.resolve()), split: f"images/{split}", "names": dict(enumerate(ds.category_names))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return report


def _voc_xml(ds: CocoDataset, k: int, name: str) -> ET.Element:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", ds.widths[k]), ("height", ds.heights[k]), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    rows = ds.annotations_of(k)
    for c, box, crowd in zip(ds.ann_category[rows].tolist(), ds.boxes_xyxy[rows], ds.iscrowd[rows], strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = ds.category_name(c)
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "1" if crowd else "0"
        bnd = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (float(v) for v in box)
        for tag, value in (("xmin", x1 + 1.0), ("ymin", y1 + 1.0), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, tag).text = _num(value)
    ET.indent(root)
    return root


def write_voc(ds: CocoDataset, out: Path, *, split: str = "train") -> ConvertReport:
    """Write ``ds`` as a Pascal VOC folder: ``Annotations/*.xml``, ``JPEGImages/`` links,
    ``ImageSets/Main/<split>.txt``; crowd boxes become ``difficult`` objects."""
    _new_folder(out)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True)
    b = ds.boxes_xyxy.astype(np.float64)
    back = np.stack([(b[:, 0] + 1.0) - 1.0, (b[:, 1] + 1.0) - 1.0, b[:, 2], b[:, 3]], axis=1).astype(np.float32)
    report = ConvertReport(out, inexact=int((back != ds.boxes_xyxy).any(axis=1).sum()))
    ids = []
    for k, (source, name) in enumerate(zip(_image_sources(ds), _link_names(ds), strict=True)):
        stem = PurePosixPath(name).stem
        if source is not None:
            os.symlink(source, out / "JPEGImages" / name)
        else:
            report.images_missing += 1  # the XML holds the size: the image is not needed to read it
        xml = _voc_xml(ds, k, name)
        ET.ElementTree(xml).write(out / "Annotations" / f"{stem}.xml", encoding="utf-8", xml_declaration=True)
        ids.append(stem)
        report.images += 1
        report.boxes += len(xml.findall("object"))
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return report


def convert(ds: CocoDataset, to: str, out: str | os.PathLike, *, split: str = "train") -> ConvertReport:
    """Write ``ds`` in the format ``to`` (one of :data:`TARGETS`) at ``out`` (a .json file for COCO, a new folder
    otherwise)."""
    path = Path(out)
    if to == "coco":
        if path.is_dir():
            raise ValueError(f"output {path} is a folder: COCO is written to a .json file")
        if not path.parent.is_dir():
            raise ValueError(f"output folder {path.parent} does not exist (for {path})")
        return write_coco(ds, path)
    if to == "yolo":
        return write_yolo(ds, path, split=split)
    if to == "voc":
        return write_voc(ds, path, split=split)
    raise ValueError(f"unknown target format {to!r}: use one of {', '.join(TARGETS)}")


def add_convert_command(sub: argparse._SubParsersAction) -> None:
    """Register ``python -m explorer convert PATH --to coco|yolo|voc OUT`` on the CLI's subcommands."""
    cmd = sub.add_parser(
        "convert",
        help="convert a COCO, YOLO or Pascal VOC dataset to another of these formats",
        description="Read a dataset (COCO JSON, YOLO data.yaml or images/ + labels/, Pascal VOC folder) and write it "
        "as COCO JSON (OUT.json or OUT.json.gz) or as a YOLO or VOC folder (OUT, new or empty). Images are "
        "referenced by symbolic links, not copied. The boxes read back bit for bit (the report says otherwise).",
    )
    add_dataset_arguments(cmd, split_help="the split to read (and the split name written; default train)")
    cmd.add_argument("--to", choices=TARGETS, required=True, help="the format to write")
    cmd.add_argument("out", type=Path, help="the .json file (coco) or the new folder (yolo, voc) to write")
    cmd.add_argument("--images", type=Path, default=None, help="the folder of a COCO file's images")


def run_convert(args: argparse.Namespace) -> int:
    """The ``convert`` subcommand: read, write, print what was written. ``ValueError`` on bad input."""
    from explorer.dataset.formats import load_dataset

    if args.images is not None and not args.images.is_dir():
        raise ValueError(f"images folder {args.images} does not exist")
    ds = load_dataset(args.dataset, format=args.format, split=args.split, images=args.images)
    errors = int((ds.problems["severity"] == "error").sum())
    print(f"read {ds.name}: {ds.num_images:,} images, {ds.num_annotations:,} boxes, {errors:,} problems dropped")
    report = convert(ds, args.to, args.out, split=args.split or "train")
    print(report.summary())
    return 0
