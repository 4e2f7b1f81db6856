"""A dataset as users upload it: a zip holding a COCO JSON with its images, a YOLO dataset (data.yaml, or images/ +
labels/) or a Pascal VOC folder, read into the one dataset type by the same readers as a folder on disk.

The readers work on files, so :func:`load_zip_dataset` unpacks the zip into a temporary folder, reads the dataset
there and removes the folder before it returns: nothing of an upload outlives the call on disk, and the images are
served from the zip in memory afterwards (:class:`~explorer.dataset.image_stores.ZipImages`, under
:attr:`ZipDataset.prefix`). Unpacking is bounded: at most :data:`MAX_MEMBERS` files and ``max_bytes`` unpacked
bytes (from the zip's own sizes, and counted while writing), member names with ``..`` or an absolute path are
refused, and the readers run with ``root=`` the folder, so a data.yaml or a split list that points outside the
upload is a ``ValueError``. Only what a reader may open is written: annotation files (``.json``, ``.json.gz``,
``.yaml``, ``.txt``, ``.xml``) and images; images are written empty first (the layout is all that finding the
dataset needs) and filled only for YOLO (sizes from the image headers) and VOC (sizes checked against them), never
for COCO, whose JSON holds the sizes. At most two zips are unpacked at once per process (:data:`UNPACK_SLOTS`),
so the disk in use stays below twice ``max_bytes``.

Example:
    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w") as zf:
    ...     zf.writestr("set/instances.json", '{"images": [{"id": 1, "width": 8, "height": 8, "file_name": "a.jpg"}]}')
    >>> zd = load_zip_dataset(buf.getvalue(), name="set.zip")
    >>> zd.format, zd.dataset.num_images, zd.dataset.name, zd.prefix
    ('coco', 1, 'set.zip/set/instances.json', 'set')
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from explorer.dataset.coco import CocoDataset
from explorer.dataset.coco_json import DEFAULT_MAX_BYTES
from explorer.dataset.formats import Located, dataset_splits, default_split, find_datasets, load_dataset
from explorer.dataset.image_headers import is_image_file

#: Most files a zip may hold (COCO train2017 has 118,287 images).
MAX_MEMBERS = 250_000
#: Zips unpacked at the same time in one process (the others wait).
UNPACK_SLOTS = threading.BoundedSemaphore(2)
_DATA_SUFFIXES = (".json", ".json.gz", ".yaml", ".yml", ".txt", ".xml")


@dataclass(frozen=True)
class ZipDataset:
    """A dataset read from a zip.

    Attributes:
        dataset: the dataset (``image_root`` is "": the unpacked folder is gone).
        format: ``"coco"``, ``"yolo"`` or ``"voc"``; split: the split read (None: the whole dataset).
        splits: the splits the dataset has (empty when there is no choice; see
            :func:`~explorer.dataset.formats.dataset_splits`).
        prefix: the folder inside the zip that the dataset's file names are relative to ("" for the top).
        where: the dataset's path inside the zip (a file or a folder; "." for the whole zip).
    """

    dataset: CocoDataset
    format: str
    split: str | None
    splits: tuple[str, ...]
    prefix: str
    where: str


def zip_members(data: bytes) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The archive and its files that a reader may open (annotation files and images; macOS ``__MACOSX/`` and
    hidden ``._`` files left out).

    Raises:
        ValueError: not a zip, more than :data:`MAX_MEMBERS` files, or a member name that leaves the archive.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"not a zip archive that can be read ({err})") from None
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"the zip holds {len(infos):,} entries, over the {MAX_MEMBERS:,} limit")
    kept = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise ValueError(f"the zip member {info.filename!r} leaves the archive (an absolute path or '..')")
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            continue
        if name.lower().endswith(_DATA_SUFFIXES) or is_image_file(name):
            kept.append(info)
    return zf, kept


def _write(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: list[int]) -> None:
    """Unpack one member, counting its bytes against ``budget[0]`` (what is left of ``max_bytes``)."""
    target = dest / info.filename.replace("\\", "/")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, target.open("wb") as out:
        while block := src.read(1 << 20):
            budget[0] -= len(block)
            if budget[0] < 0:
                raise ValueError("the zip unpacks to more than its size limit")
            out.write(block)


def _unpack(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path, budget: list[int], *, images: bool) -> None:
    """Write the images (``images``) or else the annotation files and the images as empty files, under ``dest``."""
    chosen = [i for i in infos if is_image_file(i.filename) == images]
    total = sum(i.file_size for i in chosen)
    if total > budget[0]:
        what = "images" if images else "annotation files"
        raise ValueError(f"the zip's {what} unpack to {total:,} bytes, over the {budget[0]:,} bytes left of its limit")
    try:
        for info in chosen:
            _write(zf, info, dest, budget)
        for info in [] if images else infos:
            if is_image_file(info.filename):
                target = dest / info.filename.replace("\\", "/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as err:
        raise ValueError(f"the zip cannot be unpacked ({err})") from None


def _find(top: Path, name: str, format: str | None, split: str | None) -> Located:
    """The one dataset in the unpacked zip, looking into a single top folder as a zip of a folder has it."""
    folder = top
    found = find_datasets(folder, split, format)
    while not found:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        folder = entries[0]
        found = find_datasets(folder, split, format)
    what = f"{format} dataset" if format else "dataset"
    if not found:
        raise ValueError(
            f"no {what} in {name}: expected a COCO .json, a YOLO data.yaml or images/ + labels/, or a VOC "
            "Annotations/ folder (at the top of the zip or in its one folder)"
        )
    if len(found) > 1:
        names = ", ".join(f"{_inside(c.path, top)} ({c.format})" for c in found)
        raise ValueError(f"{name} holds several datasets: {names}. Zip one of them, or choose its format.")
    return found[0]


def _inside(path: Path, top: Path) -> str:
    return path.relative_to(top).as_posix() if path != top else "."


def load_zip_dataset(
    data: bytes,
    *,
    name: str = "the zip",
    format: str | None = None,
    split: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_json_bytes: int = DEFAULT_MAX_BYTES,
    workers: int | None = None,
) -> ZipDataset:
    """Read the one dataset in a zip (see the module docstring).

    Args:
        data: the zip's bytes; name: how messages and the dataset's name call it.
        format: the format, when it should not be found (``"coco"``, ``"yolo"``, ``"voc"``).
        split: the split to read; None: :func:`~explorer.dataset.formats.default_split`.
        max_bytes: the most bytes unpacked; max_json_bytes: the cap on a COCO JSON (decompressed).
        workers: threads reading image headers (YOLO, VOC).

    Raises:
        ValueError: not a zip, too large, no dataset or several (named), or the reader's own errors; paths in the
            message are shown inside the zip.
    """
    zf, infos = zip_members(data)
    with UNPACK_SLOTS, tempfile.TemporaryDirectory(prefix="focalscope-zip-") as tmp:
        top = Path(tmp).resolve()
        budget = [max_bytes]
        try:
            _unpack(zf, infos, top, budget, images=False)
            found = _find(top, name, format, split)
            if found.format != "coco":  # YOLO reads the sizes from the image headers, VOC checks them
                _unpack(zf, infos, top, budget, images=True)
            splits = tuple(dataset_splits(found))
            chosen = split if split is not None else default_split(found, list(splits))
            ds = load_dataset(found.path, format=found.format, split=chosen, max_bytes=max_json_bytes,
                              workers=workers, root=top)  # fmt: skip
        except ValueError as err:
            raise ValueError(_shown(str(err), top, name)) from None
        where = _inside(found.path, top)
        image_root = Path(ds.image_root) if ds.image_root else found.path.parent  # a COCO JSON's images: beside it
        prefix = _inside(image_root, top) if image_root.is_relative_to(top) else ""
        shown = f"{name}/{where}" if where != "." else name
        problems = ds.problems.assign(message=ds.problems["message"].map(lambda m: _shown(str(m), top, name)))
        ds = replace(ds, image_root="", problems=problems, name=shown + (f" ({chosen})" if chosen else ""))
    return ZipDataset(ds, found.format, chosen, splits, "" if prefix == "." else prefix, where)


def _shown(text: str, top: Path, name: str) -> str:
    """A message with the unpacked folder's paths written as paths inside the zip."""
    return text.replace(str(top) + os.sep, "").replace(str(top), name)
