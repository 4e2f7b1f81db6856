"""Where a dataset's images come from: a folder (on the server, under the operator's data root) or an uploaded zip.

Stores read one image's bytes at a time, refuse paths that leave their folder, and carry an ``identity`` (a zip's
content digest, a folder's path and modification time) on which every cache that reads them is keyed: two users
with the same annotation file and different images never share pixels. :func:`safe_join` is the one guard for
paths chosen under the data root and :func:`check_inside` the readers' guard for the paths a dataset names;
:func:`guess_images_dir` proposes the folder of an annotation file's images.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from pathlib import Path, PurePosixPath

#: Largest single image read from a store (bytes); larger members are treated as missing.
MAX_IMAGE_BYTES = 60_000_000


class ImageStore:
    """Where the images of a dataset come from; ``read`` returns the bytes of a ``file_name`` or None.

    ``identity`` names the content (a zip's digest, a folder's path and modification time): every cache that reads
    a store is keyed on it, so that two stores with the same annotation file never share pixels.
    """

    description = ""
    identity = ""

    def read(self, file_name: str) -> bytes | None:  # pragma: no cover - interface
        raise NotImplementedError

    def has(self, file_name: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class FolderImages(ImageStore):
    """Images in a folder; a ``file_name`` that would resolve outside the folder is refused, or with ``within``
    (the data root), outside that folder (a converted dataset's images are links to the originals)."""

    def __init__(self, folder: Path, *, within: Path | None = None) -> None:
        self.folder = folder.resolve()
        self.within = within.resolve() if within is not None else self.folder
        self.description = f"folder {folder.name}/"
        try:
            mtime = self.folder.stat().st_mtime_ns
        except OSError:
            mtime = 0
        self.identity = f"folder:{self.folder}:{mtime}:{self.within}"

    def _path(self, file_name: str) -> Path | None:
        try:
            path = (self.folder / file_name).resolve()
            if not path.is_relative_to(self.within) or not path.is_file():
                # COCO file names are often bare; fall back on the base name inside the folder
                path = (self.folder / PurePosixPath(file_name).name).resolve()
                if not path.is_relative_to(self.within) or not path.is_file():
                    return None
        except (OSError, ValueError):
            return None
        return path

    def has(self, file_name: str) -> bool:
        return self._path(file_name) is not None

    def read(self, file_name: str) -> bytes | None:
        path = self._path(file_name)
        if path is None or path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        return path.read_bytes()


class ZipImages(ImageStore):
    """Images inside an uploaded zip, looked up by path or by base name; members are read one at a time.
    ``key`` is the digest of ``data`` when the caller has it (hashing a 300 MB zip takes about a second)."""

    def __init__(self, data: bytes, key: str | None = None) -> None:
        if not data:
            raise ValueError("the images file is empty")
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise ValueError("the images file is not a zip archive")
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = [i for i in self.zip.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"the zip archive cannot be read: {exc}") from None
        self.by_name = {i.filename: i for i in infos}
        self.by_base = {}
        for i in infos:
            self.by_base.setdefault(PurePosixPath(i.filename).name, i)
        self.lock = threading.Lock()
        self.size = len(data)
        self.description = f"zip with {len(infos):,} files"
        self.identity = f"zip:{key or hashlib.sha256(data).hexdigest()}"

    def __sizeof__(self) -> int:
        """The archive's bytes plus about 200 bytes per member (what the cache bounds by)."""
        return self.size + 200 * len(self.by_name)

    def _info(self, file_name: str) -> zipfile.ZipInfo | None:
        return self.by_name.get(file_name) or self.by_base.get(PurePosixPath(file_name).name)

    def has(self, file_name: str) -> bool:
        return self._info(file_name) is not None

    def read(self, file_name: str) -> bytes | None:
        info = self._info(file_name)
        if info is None or info.file_size > MAX_IMAGE_BYTES:
            return None
        with self.lock:
            try:
                return self.zip.read(info)
            except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
                return None


class SubfolderImages(ImageStore):
    """The images of a store below a folder ``prefix`` of it (a dataset in a subfolder of a zip): a name is looked
    up as ``prefix + file_name`` first, then as the inner store finds it (a bare COCO name by its base name)."""

    def __init__(self, store: ImageStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = f"{store.description}, folder {self.prefix or './'}"
        self.identity = f"{store.identity}/{self.prefix}"

    def has(self, file_name: str) -> bool:
        return self.store.has(self.prefix + file_name) or self.store.has(file_name)

    def read(self, file_name: str) -> bytes | None:
        if self.prefix and self.store.has(self.prefix + file_name):
            return self.store.read(self.prefix + file_name)
        return self.store.read(file_name)


def image_coverage(store: ImageStore, file_names: list[str], limit: int = 500) -> tuple[int, int]:
    """How many of the first ``limit`` non-empty file names the store holds: ``(found, checked)``."""
    names = [f for f in file_names[: max(limit, 0) * 2] if f][:limit]
    return sum(store.has(f) for f in names), len(names)


def coverage_message(store: ImageStore, file_names: list[str], limit: int = 500) -> str | None:
    """A warning when the images do not match the annotation file's ``file_name`` values; None when they do."""
    found, checked = image_coverage(store, file_names, limit)
    if checked == 0 or found == checked:
        return None
    if found == 0:
        example = next(f for f in file_names if f)
        return (
            f"None of the annotation file's image names (e.g. {example!r}) is in the {store.description}: "
            "the image views stay empty. Are these the images of another split?"
        )
    return f"Only {found:,} of the {checked:,} image names checked are in the {store.description}."


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative`` resolved, refusing anything that leaves ``root`` (.., absolute paths, symlinks)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{relative!r} is outside the data root")
    return path


def check_inside(path: Path, root: Path | None, what: str = "") -> Path:
    """``path`` when it resolves inside ``root`` (symlinks followed), else ``ValueError`` naming it; no check when
    ``root`` is None. The readers' guard for datasets under the operator's data root or unpacked from a zip.

    Example:
        >>> check_inside(Path("/data/set/../../etc/x.yaml"), Path("/data"), "train")
        Traceback (most recent call last):
        ...
        ValueError: train /data/set/../../etc/x.yaml is outside /data
    """
    if root is not None and not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{what + ' ' if what else ''}{path} is outside {root}")
    return path


def guess_images_dir(json_rel: str, dirs: list[str]) -> int:
    """Index (in ["(none)"] + dirs) of the folder most likely to hold the images of an annotation file."""
    stem = PurePosixPath(json_rel).stem
    parent = PurePosixPath(json_rel).parent
    base = parent.parent if parent.name == "annotations" else parent
    for k, d in enumerate(dirs):
        p = PurePosixPath(d)
        if p.parent == base and p.name in stem and p.name != "annotations":
            return k + 1
    for k, d in enumerate(dirs):
        p = PurePosixPath(d)
        if p.parent == base and p.name in ("images", "img", "imgs"):
            return k + 1
    return 0
