"""The dataset sources of Dataset diagnostics and the Model scan: the built-in sample, an upload (a COCO JSON with an
optional zip of its images, or a zip holding a COCO, YOLO or Pascal VOC dataset with its images) or, only when the
operator sets ``FOCALSCOPE_DATA_ROOT``, a dataset chosen among those under that root (a COCO .json, a YOLO
data.yaml, a VOC folder; never a typed path: every path is resolved and must stay inside the root, and the readers
refuse a data.yaml or split list that points outside it).

Every source carries a key that names everything its dataset is read from: the content digest of the uploaded
bytes (or the server file's path, size and modification time), the format and the split. The caches of the pages
are keyed on it, so one session's upload never reaches another's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.dataset.coco import CocoDataset, load_coco
from explorer.dataset.formats import Located, dataset_splits, default_split, load_dataset
from explorer.dataset.image_stores import (
    FolderImages,
    ImageStore,
    SubfolderImages,
    ZipImages,
    check_inside,
    guess_images_dir,
    safe_join,
)
from explorer.dataset.zip_dataset import ZipDataset, load_zip_dataset
from ui.common import MAX_JSON_BYTES, cached, digest, kept, kept_file, pixel_limit_help, sample_dataset_path

DATA_ROOT_ENV = "FOCALSCOPE_DATA_ROOT"
MAX_ZIP_BYTES = 2_000_000_000
#: Zip image stores kept (within ``limits().cache_bytes``): each holds its whole archive.
ZIP_CACHE_ENTRIES = 2
#: Datasets read from a zip or a server YOLO / VOC folder, kept (within ``limits().cache_bytes``).
DATASET_CACHE_ENTRIES = 2
FORMAT_CHOICES = ("auto", "coco", "yolo", "voc")
ALL_SPLITS = "(all)"
VOC_DIFFICULT_RULE = (
    "VOC `difficult` objects are ignore regions, as COCO crowd boxes are: hatched in the image views, never matched "
    "to an anchor, counted apart."
)


def zip_store(key: str, data: bytes) -> ZipImages:
    """The zip image store of an upload, once per content digest ``key`` (raises ValueError if not a zip), in the
    shared cache bounded by ``limits().cache_bytes`` (a zip store holds the whole archive)."""
    return cached("zips", key, lambda: ZipImages(data, key), max_entries=ZIP_CACHE_ENTRIES)


@dataclass
class Source:
    """The chosen dataset: a display name, a key naming everything it is read from (content digest, format,
    split), how to read it, its size in bytes, its images, and the format and split read."""

    name: str
    key: str
    load: Callable[[], CocoDataset]
    size: int
    images: ImageStore | None
    format: str = "coco"
    split: str | None = None


def read_summary(source: Source, ds: CocoDataset) -> str:
    """What was read, for the page: format, split, images, classes (and the VOC difficult rule)."""
    split = f" · split **{source.split}**" if source.split else ""
    text = f"Read as **{source.format.upper()}**{split} · {ds.num_images:,} images · {len(ds.category_ids):,} classes"
    return text + (f". {VOC_DIFFICULT_RULE}" if source.format == "voc" else "")


@st.cache_data(max_entries=16, show_spinner=False)
def file_digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a server-side file, once per (path, modification time, size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


@st.cache_data(max_entries=8, show_spinner=False)
def upload_digest(file_id: str, size: int, _data: bytes) -> str:
    """SHA-256 of an uploaded file, once per upload (Streamlit's file id)."""
    return digest(_data)


def data_root() -> Path | None:
    """The operator's data root (``FOCALSCOPE_DATA_ROOT``), if set and a folder."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    return root if root.is_dir() else None


def _dataset_entry(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".json", ".json.gz", ".yaml", ".yml"))


@st.cache_data(ttl=60, max_entries=4, show_spinner=False)
def server_entries(root: str, max_depth: int = 4, limit: int = 2000) -> tuple[list[str], list[str]]:
    """Datasets under the data root: COCO .json / .json.gz and YOLO .yaml files, and VOC folders (those with an
    ``Annotations/``, listed with a trailing ``/``); and every folder (relative paths, sorted, bounded)."""
    base = Path(root)
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(base):
        rel = Path(dirpath).relative_to(base)
        depth = len(rel.parts)
        if "Annotations" in dirnames:
            files.append(f"{rel.as_posix()}/" if depth else "./")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        if depth:
            dirs.append(rel.as_posix())
        files += [(rel / f).as_posix() for f in sorted(filenames) if _dataset_entry(f)]
        if len(files) + len(dirs) > limit:
            break
    return sorted(files), sorted(dirs)


def _split_widget(splits: tuple[str, ...] | list[str], chosen: str | None, fmt: str, key: str, where) -> None:
    """The split choice when there is one (VOC may also read every annotation: ``(all)``)."""
    options = ([ALL_SPLITS] if fmt == "voc" else []) + list(splits)
    if len(options) > 1:
        where.selectbox("Split", options, index=options.index(chosen or ALL_SPLITS), key=key)


def _chosen_split(key: str) -> str | None:
    value = st.session_state.get(key)
    return None if value in (None, ALL_SPLITS) else value


# ---------------------------------------------------------------- the widget


def source_widget() -> Source | None:
    """Source choice and inputs; None when nothing usable is chosen yet (a message is shown)."""
    root = data_root()
    options = ["Sample dataset (200 synthetic images)", "Upload a COCO JSON", "Upload a dataset zip"]
    if root is not None:
        options.append("Server data folder")
    choice = st.radio(
        "Dataset", options, horizontal=True, key=kept("dd_source"),
        help="A dataset zip holds a COCO JSON with its images, a YOLO dataset (data.yaml, or images/ + labels/) or "
        "a Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/Main/).",
    )  # fmt: skip
    if choice == options[0]:
        path = Path(sample_dataset_path())
        info = path.stat()
        key = file_digest(str(path), info.st_mtime_ns, info.st_size)
        load = lambda: load_coco(path.read_bytes(), name="sample dataset")  # noqa: E731
        return Source("sample dataset", key, load, info.st_size, FolderImages(path.parent / "images"))
    if choice == options[1]:
        return _coco_upload()
    if choice == options[2]:
        return _zip_upload()
    assert root is not None
    return _server_source(root)


def _coco_load(data: bytes, name: str) -> Callable[[], CocoDataset]:
    return lambda: load_coco(data, name=name, max_bytes=MAX_JSON_BYTES)


def _coco_upload() -> Source | None:
    c1, c2 = st.columns(2)
    ann = kept_file("COCO instances JSON", key="dd_json", where=c1, type=["json"])
    imgs = kept_file("Images (optional zip)", key="dd_zip", where=c2, type=["zip"], help=pixel_limit_help())
    if ann is None:
        st.info("Upload a COCO instances JSON (for example `instances_val2017.json`).")
        return None
    if ann.size > MAX_JSON_BYTES:
        st.error(f"{ann.name} is {ann.size / 1e6:.0f} MB; the limit is {MAX_JSON_BYTES / 1e6:.0f} MB.")
        return None
    store = None
    if imgs is not None:
        if imgs.size > MAX_ZIP_BYTES:
            st.error(f"{imgs.name} is {imgs.size / 1e6:.0f} MB; the limit is {MAX_ZIP_BYTES / 1e6:.0f} MB.")
        else:
            try:
                store = zip_store(upload_digest(imgs.file_id, imgs.size, imgs.data), imgs.data)
            except ValueError as exc:
                st.error(f"{imgs.name}: {exc}. The statistics below do not need the images.")
    key = upload_digest(ann.file_id, ann.size, ann.data)
    return Source(ann.name, key, _coco_load(ann.data, ann.name), ann.size, store)


def zip_dataset(key: str, name: str, data: bytes, fmt: str, split: str | None) -> ZipDataset:
    """The dataset in an uploaded zip, read once per (content digest ``key``, name, format, split) in a shared
    cache bounded by entries and ``limits().cache_bytes``; ValueError (not cached) when it cannot be read."""
    return cached(
        "datasets", ("zip", key, name, fmt, split),
        lambda: load_zip_dataset(data, name=name, format=None if fmt == "auto" else fmt, split=split,
                                 max_bytes=MAX_ZIP_BYTES, max_json_bytes=MAX_JSON_BYTES),
        max_entries=DATASET_CACHE_ENTRIES, spinner=f"Reading {name}…",
    )  # fmt: skip


def _zip_upload() -> Source | None:
    c1, c2, c3 = st.columns([2, 1, 1])
    up = kept_file("Dataset zip", key="dd_dataset_zip", where=c1, type=["zip"], help=pixel_limit_help())
    fmt = c2.selectbox("Format", FORMAT_CHOICES, key=kept("dd_zip_format"), help="auto: found from the files")
    if up is None:
        st.info(
            "Upload a zip of a dataset with its images: a COCO JSON, a YOLO dataset (data.yaml, or images/ + "
            "labels/) or a Pascal VOC folder, at the top of the zip or in its one folder."
        )
        return None
    if up.size > MAX_ZIP_BYTES:
        st.error(f"{up.name} is {up.size / 1e6:.0f} MB; the limit is {MAX_ZIP_BYTES / 1e6:.0f} MB.")
        return None
    key = upload_digest(up.file_id, up.size, up.data)
    split_key = f"dd_zip_split:{key}:{fmt}"
    try:
        zd = zip_dataset(key, up.name, up.data, fmt, _chosen_split(split_key))
        store = SubfolderImages(zip_store(key, up.data), zd.prefix)
    except ValueError as exc:
        st.error(f"{up.name}: {exc}")
        return None
    _split_widget(zd.splits, zd.split, zd.format, split_key, c3)
    ds = zd.dataset
    source_key = f"zip:{key}:{zd.format}:{zd.split}"
    return Source(ds.name, source_key, lambda: ds, up.size, store, zd.format, zd.split)


# ---------------------------------------------------------------- the server's data root


def server_dataset(root: Path, found: Located, split: str | None, stamp: tuple[int, int]) -> CocoDataset:
    """A YOLO or VOC dataset under the data root, read once per (path, split, ``stamp``: the modification time and
    size of the data.yaml or folder) with the readers' root guard; ValueError (not cached) otherwise."""
    return cached(
        "datasets", ("server", str(found.path), found.format, split, stamp),
        lambda: load_dataset(found.path, format=found.format, split=split, root=root),
        max_entries=DATASET_CACHE_ENTRIES, spinner=f"Reading {found.path.name}…",
    )  # fmt: skip


def _server_source(root: Path) -> Source | None:
    files, dirs = server_entries(str(root))
    if not files:
        st.warning(f"No dataset under the data root ({DATA_ROOT_ENV}): no .json, data.yaml or VOC folder.")
        return None
    c1, c2 = st.columns(2)
    rel = c1.selectbox("Dataset", files, key="dd_server_json", help="COCO .json, YOLO .yaml, VOC folders (…/)")
    try:
        path = safe_join(root, rel)
        fmt = "voc" if rel.endswith("/") else "yolo" if rel.lower().endswith((".yaml", ".yml")) else "coco"
        if fmt != "coco":
            return _server_folder_dataset(root, rel, Located(fmt, path), c2)
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            st.error(f"{rel} is {size / 1e6:.0f} MB; the limit is {MAX_JSON_BYTES / 1e6:.0f} MB.")
            return None
        img_choice = c2.selectbox(
            "Images folder", ["(none)", *dirs], index=guess_images_dir(rel, dirs), key=f"dd_server_images:{rel}"
        )
        key = file_digest(str(path), path.stat().st_mtime_ns, size)
        store = None if img_choice == "(none)" else FolderImages(safe_join(root, img_choice), within=root)
    except (OSError, ValueError) as exc:
        st.error(f"Cannot read {rel}: {exc}")
        return None
    return Source(rel, key, lambda: load_coco(path, name=rel, max_bytes=MAX_JSON_BYTES), size, store)


def _server_folder_dataset(root: Path, rel: str, found: Located, where) -> Source:
    """A YOLO data.yaml or a VOC folder under the data root, with its split choice; its images are its own folder
    (inside the root). Raises ValueError / OSError for the caller's message."""
    splits = dataset_splits(found)
    split_key = f"dd_server_split:{rel}"
    split = _chosen_split(split_key) or default_split(found, splits)
    _split_widget(splits, split, found.format, split_key, where)
    info = found.path.stat()
    ds = server_dataset(root, found, split, (info.st_mtime_ns, info.st_size))
    folder = check_inside(Path(ds.image_root), root, "the images folder") if ds.image_root else None
    store = FolderImages(folder, within=root) if folder is not None else None
    key = f"server:{found.format}:{found.path}:{info.st_mtime_ns}:{split}"
    return Source(ds.name, key, lambda: ds, info.st_size, store, found.format, split)
