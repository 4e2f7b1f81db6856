"""YOLO datasets as users have them: a ``data.yaml`` (Ultralytics' layout) or a bare ``images/`` + ``labels/`` pair,
read into the one dataset type, :class:`~explorer.dataset.coco.CocoDataset`.

Layout, as Ultralytics reads it (``ultralytics/data/utils.py``: ``check_det_dataset``, ``img2label_paths``):

- ``data.yaml``: ``path`` (the dataset root, relative to the yaml's folder; absent or not a folder there: the yaml's
  folder. Ultralytics tries the working directory and then its datasets folder, which would make the result
  depend on where the command runs), ``train`` / ``val`` / ``test`` (each a
  folder of images, a ``.txt`` list of image paths, one image, or a list of those; relative paths are relative to
  the root, and relative lines of a list file to the list file's folder), ``names`` (a list, or a dict
  ``{id: name}``) or only ``nc`` (names ``class_0``...). With several splits, ``split`` chooses one.
- a bare pair: a folder with ``images/`` and ``labels/`` (optionally ``images/<split>/``), class names from a
  ``classes.txt`` beside them when there is one, else the ids found (named ``"0"``, ``"1"``...).
- an image's label file: the last ``/images/`` of its path replaced by ``/labels/`` and the suffix by ``.txt``.

Rules: YOLO class ``k`` becomes COCO category id ``k`` (0-based, as in the file) with the yaml's name; a class id
that the yaml's names do not cover is a ``ValueError`` naming the label file and line (Ultralytics refuses it
too). An empty label file, and an image without one, is an image without boxes. A label file in a split folder
whose image is missing is a ``ValueError``. Bad lines are problem rows named by file and line
(:mod:`explorer.dataset.yolo_labels`); segment lines become their bounding box, with one notice. Image sizes come
from the file headers, EXIF rotation applied as Ultralytics' ``exif_size`` (:mod:`explorer.dataset.image_headers`),
read by a thread pool; an unreadable image is a problem row and left out. Boxes are
:func:`explorer.boxes.cxcywhn_to_xyxy`'s float32 pixels, clamped to the image as COCO boxes are (silently within
:data:`~explorer.dataset.yolo_labels.CLIP_NOTICE_PX`). YOLO has no crowd flag: no box is a crowd region.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for sub in ("images", "labels"):
    ...         _ = (Path(tmp) / sub).mkdir()
    ...     Image.new("RGB", (100, 50)).save(f"{tmp}/images/a.jpg")
    ...     _ = (Path(tmp) / "labels" / "a.txt").write_text("3 0.5 0.5 0.5 0.5\\n")
    ...     ds = load_yolo(tmp)
    >>> ds.file_names, ds.boxes_xyxy.tolist(), ds.category_ids.tolist(), ds.category_names
    (['images/a.jpg'], [[25.0, 12.5, 75.0, 37.5]], [3], ['3'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from explorer.boxes import cxcywhn_to_xyxy
from explorer.dataset.box_records import BoxTable, ImageTable, build_dataset
from explorer.dataset.coco import CocoDataset
from explorer.dataset.coco_problems import Problems
from explorer.dataset.image_headers import image_sizes, is_image_file
from explorer.dataset.image_stores import check_inside
from explorer.dataset.yolo_labels import CLIP_NOTICE_PX, LabelLines, decode_label_bytes, parse_label_text

#: Largest data.yaml, list file or label file read (bytes).
MAX_TEXT_BYTES = 50_000_000
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class YoloLayout:
    """Where one split of a YOLO dataset is: its images (sorted), the folders whose label files must all have an
    image, the class names (None: taken from the labels), and what to call it."""

    root: Path
    images: list[Path]
    label_dirs: list[Path]
    names: dict[int, str] | None
    name: str


def label_path(image: str | os.PathLike) -> Path:
    """Ultralytics' ``img2label_paths`` rule for one image.

    Example:
        >>> label_path("/data/coco/images/val/a.b.jpg").as_posix()
        '/data/coco/labels/val/a.b.txt'
    """
    text = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(text.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def read_text(path: Path, what: str) -> str:
    """A small text file (a yaml, a list, a label file) as text; ``ValueError`` naming it when too large or not
    UTF-8."""
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise ValueError(f"{what} {path} is {size:,} bytes, over the {MAX_TEXT_BYTES:,} byte limit")
    return decode_label_bytes(path.read_bytes(), f"{what} {path}")


def read_data_yaml(path: Path) -> dict:
    """The mapping of a ``data.yaml`` (``yaml.safe_load``); ``ValueError`` naming the file otherwise."""
    try:
        data = yaml.safe_load(read_text(path, "data.yaml"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"{path} is not valid YAML{at}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YOLO data.yaml: the top level is a {type(data).__name__}, not a mapping")
    return data


def class_names(data: dict, path: Path) -> dict[int, str] | None:
    """``names`` (list or dict) or ``nc`` of a data.yaml as id -> name; None when it has neither."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (type(nc) is not int or nc < 0):
        raise ValueError(f"{path}: 'nc' must be a non-negative integer, got {nc!r}")
    if names is None:
        return None if nc is None else {k: f"class_{k}" for k in range(nc)}
    scalar = (str, int, float)  # never str() of a nested value: YAML aliases can make it exponentially long
    if isinstance(names, list):
        out = dict(enumerate(str(n) if isinstance(n, scalar) else None for n in names))
    elif isinstance(names, dict):
        try:
            out = {int(k): str(v) if isinstance(v, scalar) else None for k, v in names.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{path}: the keys of 'names' must be class ids (integers)") from None
    else:
        raise ValueError(f"{path}: 'names' must be a list or a mapping, got a {type(names).__name__}")
    if not all(type(v) is str for v in out.values()):
        raise ValueError(f"{path}: the class names must be plain strings or numbers")
    if nc is not None and nc != len(out):
        raise ValueError(f"{path}: 'nc' is {nc} but 'names' has {len(out)} entries")
    return dict(sorted(out.items()))


def _choose(splits: list[str], split: str | None, where: str) -> str:
    if split is not None:
        if split not in splits:
            raise ValueError(f"{where} has no split {split!r} (it has: {', '.join(splits) or 'none'})")
        return split
    if not splits:
        raise ValueError(f"{where} has no split (a data.yaml names its images under train, val or test)")
    if len(splits) != 1:
        raise ValueError(f"{where} has the splits {', '.join(splits)}: choose one (--split)")
    return splits[0]


def yaml_splits(data: dict) -> list[str]:
    """The splits a data.yaml names (``train``, ``val``, ``test`` with a non-empty value), in that order."""
    return [s for s in SPLITS if data.get(s) not in (None, "", [])]


def pair_splits(folder: Path) -> list[str]:
    """The subfolders of a bare pair's ``images/`` when it has no image of its own (its splits), else []."""
    base = folder / "images"
    if not base.is_dir() or any(is_image_file(p) and p.is_file() for p in base.iterdir()):
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def yaml_layout(path: Path, split: str | None = None, root_guard: Path | None = None) -> YoloLayout:
    """The images of one split of a ``data.yaml`` (see the module docstring); with ``root_guard``, a root or a
    split entry that resolves outside it is a ``ValueError`` naming it."""
    data = read_data_yaml(check_inside(path, root_guard, "the data.yaml"))
    names = class_names(data, path)
    root_value = data.get("path")
    if root_value is not None and not isinstance(root_value, str):
        raise ValueError(f"{path}: 'path' must be a folder name, got a {type(root_value).__name__}")
    root = path.parent
    if root_value not in (None, "") and (given := Path(os.path.normpath(path.parent / str(root_value)))).is_dir():
        root = given  # else the yaml's folder: Ultralytics' own yamls name a root under its datasets folder
    check_inside(root, root_guard, f"{path.name}: 'path'")
    chosen = _choose(yaml_splits(data), split, str(path))
    entries = data[chosen] if isinstance(data[chosen], list) else [data[chosen]]
    images: list[Path] = []
    label_dirs: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"{path}: split {chosen!r} must be paths, got {entry!r}")
        source = check_inside(root / entry, root_guard, f"{path.name}: {chosen!r} entry")
        if source.is_dir():
            images += _folder_images(source)
            label_dirs.append(label_path(source / "x.jpg").parent)
        elif source.is_file() and source.suffix.lower() == ".txt":
            images += _listed_images(source)
        elif source.is_file() and is_image_file(source):
            images.append(source)
        else:
            raise ValueError(f"{path}: split {chosen!r} points to {source}, which is not a folder, list or image")
    return YoloLayout(root, sorted(set(images)), label_dirs, names, f"{path.name} ({chosen})")


def pair_layout(folder: Path, split: str | None = None) -> YoloLayout:
    """The images of a bare ``images/`` + ``labels/`` pair (optionally one ``images/<split>/`` of it)."""
    base = folder / "images"
    if not base.is_dir():
        raise ValueError(f"{folder} has no images/ folder (a YOLO folder needs images/ and labels/, or a data.yaml)")
    subs = pair_splits(folder)
    if split is not None or subs:
        subs = subs or sorted(p.name for p in base.iterdir() if p.is_dir())
        base = base / _choose(subs, split, f"{folder}/images")
    names = None
    classes = next((p for p in (folder / "classes.txt", folder / "labels" / "classes.txt") if p.is_file()), None)
    if classes is not None:
        names = dict(enumerate(s.strip() for s in read_text(classes, "class list").splitlines() if s.strip()))
    label_dir = label_path(base / "x.jpg").parent
    shown = folder.name if base == folder / "images" else f"{folder.name} ({base.name})"
    return YoloLayout(folder, _folder_images(base), [label_dir], names, shown)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and p.is_file())


def _listed_images(list_file: Path) -> list[Path]:
    lines = [s.strip() for s in read_text(list_file, "image list").splitlines()]
    paths = [Path(os.path.normpath(list_file.parent / s)) for s in lines if s and not s.startswith("#")]
    return [p for p in paths if is_image_file(p)]


def _check_orphans(layout: YoloLayout, labels: set[Path]) -> None:
    """``ValueError`` when a split folder's labels/ holds a label file without its image."""
    for folder in layout.label_dirs:
        if not folder.is_dir():
            continue
        orphans = sorted(
            p for p in folder.rglob("*.txt") if p.name != "classes.txt" and p not in labels and p.is_file()
        )
        if orphans:
            raise ValueError(
                f"{len(orphans)} label file(s) in {folder} have no image (e.g. {orphans[0]}): are the images of "
                "another split, or missing?"
            )


def load_yolo(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    workers: int | None = None,
    name: str | None = None,
    root: str | os.PathLike | None = None,
) -> CocoDataset:
    """Read a YOLO dataset (a data.yaml, or a folder with images/ and labels/) into a :class:`CocoDataset`.

    Args:
        path: the data.yaml, or the folder of a bare pair.
        split: which split (``train``, ``val``, ``test``, or a subfolder of ``images/``); needed when there are
            several.
        workers: threads that read image headers (default: up to 8); name: display name.
        root: a folder nothing may be read outside of (the operator's data root, an unpacked upload): the yaml's
            ``path``, its split entries, list files, images and label files that resolve outside it (``..``,
            absolute paths, symlinks) are a ``ValueError`` naming them. None: no such check.

    Raises:
        ValueError: see the module docstring (the message names the file).
    """
    p = Path(path)
    guard = Path(root) if root is not None else None
    check_inside(p, guard, "the dataset")
    layout = yaml_layout(p, split, guard) if p.is_file() else pair_layout(p, split)
    labels = {label_path(img) for img in layout.images}
    if guard is not None:
        for file in (*layout.images, *layout.label_dirs, *(f for f in labels if f.exists())):
            check_inside(file, guard, "the image or label path")
    _check_orphans(layout, labels)
    problems = Problems()
    sizes = image_sizes(layout.images, workers)
    kept = [k for k, s in enumerate(sizes) if not isinstance(s, str)]
    for k, s in enumerate(sizes):
        if isinstance(s, str):
            problems.add("error", "image_unreadable", f"{layout.images[k]}: {s}; left out with its labels")
    table = ImageTable(
        file_names=[_relative(layout.images[k], layout.root) for k in kept],
        widths=[sizes[k][0] for k in kept],  # type: ignore[index]
        heights=[sizes[k][1] for k in kept],  # type: ignore[index]
        sources=[_relative(label_path(layout.images[k]), layout.root) for k in kept],
        images_in_files=len(layout.images),
    )
    parsed = _read_labels([label_path(layout.images[k]) for k in kept], table, problems)
    boxes, categories = _boxes(parsed, table, layout.names, p)
    return build_dataset(
        table,
        boxes,
        categories,
        problems,
        name=name or layout.name,
        unit="line",
        quiet_clip_px=CLIP_NOTICE_PX,
        image_root=str(layout.root),
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _read_labels(paths: list[Path], table: ImageTable, problems: Problems) -> list[LabelLines | None]:
    """The parsed label file of every image (None: no label file); bad lines and segments as problem rows."""
    out: list[LabelLines | None] = []
    missing = 0
    segments: list[tuple[str, int]] = []
    for k, path in enumerate(paths):
        if not path.is_file():
            missing += 1
            out.append(None)
            continue
        try:
            lines = parse_label_text(read_text(path, "label file"))
        except ValueError as err:
            problems.add("error", "invalid_file", f"{err}; its boxes are left out", image_id=k + 1)
            out.append(None)
            continue
        for n, reason in lines.bad:
            problems.add("error", "invalid_line", f"{table.sources[k]} line {n}: {reason}; skipped", image_id=k + 1)
        segments += [(table.sources[k], n) for n in lines.segments]
        out.append(lines)
    if missing:
        problems.add("info", "no_label_file", f"{missing} image(s) have no label file: images without boxes")
    if segments:
        where, n = segments[0]
        problems.add(
            "info",
            "segment",
            f"{len(segments)} segment (polygon) line(s) reduced to their bounding box (e.g. {where} line {n})",
        )
    return out


def _boxes(
    parsed: list[LabelLines | None], table: ImageTable, names: dict[int, str] | None, source: Path
) -> tuple[BoxTable, dict[int, str]]:
    """The boxes of all images in pixels, and the categories; ``ValueError`` for a class the names lack."""
    per_image = [(k, lines) for k, lines in enumerate(parsed) if lines is not None and len(lines.classes)]
    if per_image:
        image = np.concatenate([np.full(len(lines.classes), k, np.int64) for k, lines in per_image])
        classes = np.concatenate([lines.classes for _, lines in per_image])
        cxcywhn = np.concatenate([lines.cxcywhn for _, lines in per_image])
        line = np.concatenate([lines.line_numbers for _, lines in per_image])
    else:
        image, classes, line, cxcywhn = (np.zeros(0, np.int64),) * 3 + (np.zeros((0, 4)),)
    if names is None:
        categories = {int(c): str(int(c)) for c in np.unique(classes)}
    else:
        categories = names
        unknown = np.flatnonzero(~np.isin(classes, np.fromiter(names, np.int64, count=len(names))))
        if len(unknown):
            k = int(unknown[0])
            raise ValueError(
                f"{table.sources[image[k]]} line {line[k]}: class {classes[k]} is not in the names of {source} "
                f"({_id_range(names)}; {len(unknown)} box(es) with such classes)"
            )
    widths = np.asarray(table.widths, np.float64)[image] if len(image) else np.zeros(0)
    heights = np.asarray(table.heights, np.float64)[image] if len(image) else np.zeros(0)
    xyxy = cxcywhn_to_xyxy(cxcywhn, widths, heights)
    return BoxTable(image=image, category=classes, xyxy=xyxy, line=line), categories


def _id_range(names: dict[int, Any]) -> str:
    ids = sorted(names)
    if not ids:
        return "it has none"
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"ids {ids[0]}..{ids[-1]}"
    return f"{len(ids)} ids"
