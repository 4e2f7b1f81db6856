"""Any dataset as users have it (COCO JSON, YOLO, Pascal VOC), found from a file or a folder and read into the one
dataset type, :class:`~explorer.dataset.coco.CocoDataset`, so that every page, the CLI and the scan take all of them.

:func:`detect_format` tells the format of a path; :func:`load_dataset` reads it, with the format and split given or
found. A file is known by its name (``.json``, ``.json.gz``: COCO; ``.yaml``, ``.yml``: YOLO; ``.xml``: one VOC
annotation) or else by its first bytes. In a folder, the candidates are: COCO ``*.json`` / ``*.json.gz`` in it or
in its ``annotations/``; YOLO ``*.yaml`` in it, else an ``images/`` + ``labels/`` pair; a VOC ``Annotations/`` in
it or in a subfolder (``VOCdevkit/VOC2007``...). ``split`` narrows several COCO files to those whose name holds it
(``val`` -> ``instances_val2017.json``). More than one candidate left is a ``ValueError`` that names them all.

Example:
    >>> import json, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "a.json").write_text(json.dumps({"images": [{"id": 1, "width": 8, "height": 8}]}))
    ...     detect_format(tmp), load_dataset(tmp).num_images
    ('coco', 1)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path

from explorer.dataset.coco import CocoDataset, load_coco
from explorer.dataset.coco_json import DEFAULT_MAX_BYTES
from explorer.dataset.image_stores import check_inside
from explorer.dataset.voc import load_voc, voc_splits
from explorer.dataset.yolo import load_yolo, pair_splits, read_data_yaml, yaml_splits

FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")

_BY_SUFFIX = {".json": "coco", ".gz": "coco", ".yaml": "yolo", ".yml": "yolo", ".xml": "voc"}


@dataclass(frozen=True)
class Located:
    """A dataset found at a path: its format and the file or folder its reader takes."""

    format: str
    path: Path


def _file_format(path: Path) -> str:
    fmt = _BY_SUFFIX.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    with path.open("rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"[") or head[:2] == b"\x1f\x8b":
        return "coco"
    if head[:1] == b"<":
        return "voc"
    raise ValueError(f"cannot tell the format of {path}: not a .json, .json.gz, .yaml or .xml file (use --format)")


def find_datasets(folder: Path, split: str | None = None, format: str | None = None) -> list[Located]:
    """Every dataset in a folder (the candidates of the module docstring), of ``format`` when given."""
    return [c for c in _candidates(folder, split) if format is None or c.format == format]


def _candidates(folder: Path, split: str | None) -> list[Located]:
    found: list[Located] = []
    coco = sorted(
        p
        for d in (folder, folder / "annotations")
        if d.is_dir()
        for p in d.iterdir()
        if p.is_file() and (p.name.lower().endswith(".json") or p.name.lower().endswith(".json.gz"))
    )
    if split is not None and len(coco) > 1:
        coco = [p for p in coco if split.lower() in p.name.lower()] or coco
    found += [Located("coco", p) for p in coco]
    yamls = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml"))
    found += [Located("yolo", p) for p in yamls]
    if not yamls and (folder / "images").is_dir() and (folder / "labels").is_dir():
        found.append(Located("yolo", folder))
    if (folder / "Annotations").is_dir():
        found.append(Located("voc", folder))
    else:
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "Annotations").is_dir())
        found += [Located("voc", p) for p in subs]
    return found


def locate(path: str | os.PathLike, *, format: str | None = None, split: str | None = None) -> Located:
    """The dataset at ``path`` (a file or a folder; see the module docstring).

    Raises:
        ValueError: no such path, an unknown format, no dataset, or several datasets (all named).
    """
    p = Path(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    if not p.exists():
        raise ValueError(f"dataset not found: {p}")
    if p.is_file():
        return Located(format or _file_format(p), p)
    found = find_datasets(p, split, format)
    if not found:
        what = f"no {format} dataset" if format else "no dataset"
        raise ValueError(
            f"{what} in {p}: expected a COCO .json, a YOLO data.yaml or images/ + labels/, or a VOC Annotations/"
        )
    if len(found) > 1:
        names = ", ".join(f"{_shown(c.path, p)} ({c.format})" for c in found)
        raise ValueError(f"{p} holds several datasets: {names}; pass one of them as the path (or --format, --split)")
    return found[0]


def _shown(path: Path, folder: Path) -> str:
    return "." if path == folder else path.relative_to(folder).as_posix()


def dataset_splits(found: Located) -> list[str]:
    """The splits a reader can choose with ``split=`` (YOLO: those the data.yaml names, or the subfolders of a
    bare pair's images/; VOC: the lists in ImageSets/Main/); [] when there is no choice (COCO: one file is one
    split). ``ValueError`` for a data.yaml that cannot be read."""
    if found.format == "yolo":
        return yaml_splits(read_data_yaml(found.path)) if found.path.is_file() else pair_splits(found.path)
    if found.format == "voc" and found.path.is_dir():
        return voc_splits(found.path)
    return []


def default_split(found: Located, splits: list[str]) -> str | None:
    """The split read when none is chosen: None where the reader reads the whole dataset without one (VOC: every
    XML; one split), else ``val`` when there is one (the smaller split in Ultralytics' layouts), else the first."""
    if found.format != "yolo" or len(splits) < 2:
        return None
    return "val" if "val" in splits else splits[0]


def detect_format(path: str | os.PathLike) -> str:
    """``"coco"``, ``"yolo"`` or ``"voc"``: the format of the dataset at ``path`` (``ValueError`` when there is none
    or several)."""
    return locate(path).format


def guess_coco_images(annotation_file: Path) -> Path | None:
    """The folder of a COCO file's images, when it is where COCO and the sample keep it: ``images/`` beside the
    file, or ``<root>/train2017/`` for ``<root>/annotations/instances_train2017.json``."""
    stem = annotation_file.name.split(".")[0]
    split = stem.split("_", 1)[1] if "_" in stem else stem
    here = annotation_file.parent
    up = here.parent if here.name == "annotations" else here
    for folder in (here / "images", up / split, up / "images" / split, up / "images"):
        if folder.is_dir():
            return folder
    return None


def load_dataset(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    split: str | None = None,
    classes: list[str] | None = None,
    difficult_as_crowd: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int | None = None,
    images: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> CocoDataset:
    """Read the dataset at ``path`` (a file or a folder, any of :data:`FORMATS`) into a :class:`CocoDataset`.

    Args:
        path: a COCO .json / .json.gz, a YOLO data.yaml, a VOC .xml, or a folder holding one dataset.
        format: the format, when it should not be found from the path; split: the split to read (YOLO, VOC;
            for a folder of COCO files, the file whose name holds it).
        classes: VOC class names in id order; difficult_as_crowd: VOC difficult objects as crowd regions.
        max_bytes: the cap on a COCO file (decompressed); workers: threads reading image headers (YOLO, VOC).
        images: the folder of a COCO file's images (default: :func:`guess_coco_images`), kept as ``image_root``.
        root: a folder nothing may be read outside of (the data root, an unpacked upload): the readers refuse
            any path a dataset names that resolves outside it (``ValueError`` naming it).

    Raises:
        ValueError: anything that is not a dataset of the format, with the file named.
    """
    found = locate(path, format=format, split=split)
    guard = Path(root) if root is not None else None
    check_inside(found.path, guard, "the dataset")
    if found.format == "yolo":
        return load_yolo(found.path, split=split, workers=workers, root=guard)
    if found.format == "voc":
        crowd = difficult_as_crowd
        return load_voc(found.path, split=split, classes=classes, difficult_as_crowd=crowd, workers=workers, root=guard)
    ds = load_coco(found.path, max_bytes=max_bytes)
    root = Path(images) if images is not None else guess_coco_images(found.path)
    return replace(ds, image_root=str(root) if root is not None else "")


def add_dataset_arguments(parser: argparse.ArgumentParser, *, split_help: str) -> None:
    """The dataset a command reads, the same on every command: ``dataset`` (a path), ``--format``, ``--split``."""
    parser.add_argument(
        "dataset", type=Path, help="a COCO JSON (.json, .json.gz), a YOLO data.yaml or folder, or a Pascal VOC folder"
    )
    parser.add_argument("--format", choices=FORMATS, default=None, help="the dataset's format (default: found)")
    parser.add_argument("--split", default=None, help=split_help)
