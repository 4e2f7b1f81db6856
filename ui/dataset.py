"""Streamlit-aware helpers of Dataset diagnostics: data sources, the bounded scan cache, image access.

Sources are the built-in sample dataset, an upload (COCO JSON, optionally a zip of its images) or, only when the
operator sets ``FOCALSCOPE_DATA_ROOT``, a file chosen among those under that root (never a typed path; every path
is resolved and must stay inside the root).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from explorer.anchors.grid import CONVENTIONS, default_config
from explorer.cache import TooLargeError
from explorer.dataset.coco import CocoDataset, load_coco
from explorer.dataset.image_stores import FolderImages, ImageStore, ZipImages, guess_images_dir, safe_join
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_result import ScanResult
from explorer.dataset.view import box_crop, labeled_anchor_image
from explorer.images import decode_image
from explorer.settings import limits
from ui.common import (
    MAX_JSON_BYTES,
    cached,
    digest,
    kept,
    kept_file,
    pixel_limit_help,
    sample_dataset_path,
    shared_cache,
)

DATA_ROOT_ENV = "FOCALSCOPE_DATA_ROOT"
MAX_ZIP_BYTES = 2_000_000_000
#: Scans kept in memory (per server process, within ``limits().cache_bytes``): a COCO-train scan holds about 200 MB.
SCAN_CACHE_ENTRIES = 3
#: Rows shown in the page's tables of boxes (the exports hold every row).
TABLE_ROWS = 2000
#: Zip image stores kept (within ``limits().cache_bytes``): each holds its whole archive.
ZIP_CACHE_ENTRIES = 2


# ---------------------------------------------------------------- image stores


def zip_store(key: str, data: bytes) -> ZipImages:
    """The zip image store of an upload, once per content digest ``key`` (raises ValueError if not a zip), in the
    shared cache bounded by ``limits().cache_bytes`` (a zip store holds the whole archive)."""
    return cached("zips", key, lambda: ZipImages(data, key), max_entries=ZIP_CACHE_ENTRIES)


# ---------------------------------------------------------------- sources


@dataclass
class Source:
    """The chosen dataset: a display name, the digest of its annotation bytes, how to read them, its images."""

    name: str
    key: str
    read: Callable[[], bytes]
    size: int
    images: ImageStore | None


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


@st.cache_data(ttl=60, max_entries=4, show_spinner=False)
def server_entries(root: str, max_depth: int = 4, limit: int = 2000) -> tuple[list[str], list[str]]:
    """JSON files and folders under the data root (relative paths, sorted, bounded)."""
    base = Path(root)
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(base):
        rel = Path(dirpath).relative_to(base)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        if depth:
            dirs.append(rel.as_posix())
        files += [(rel / f).as_posix() for f in sorted(filenames) if f.lower().endswith(".json")]
        if len(files) + len(dirs) > limit:
            break
    return sorted(files), sorted(dirs)


def source_widget() -> Source | None:
    """Source choice and inputs; None when nothing usable is chosen yet (a message is shown)."""
    root = data_root()
    options = ["Sample dataset (200 synthetic images)", "Upload a COCO JSON"]
    if root is not None:
        options.append("Server data folder")
    choice = st.radio("Dataset", options, horizontal=True, key=kept("dd_source"))
    if choice == options[0]:
        path = Path(sample_dataset_path())
        info = path.stat()
        key = file_digest(str(path), info.st_mtime_ns, info.st_size)
        return Source("sample dataset", key, path.read_bytes, info.st_size, FolderImages(path.parent / "images"))
    if choice == options[1]:
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
        return Source(ann.name, key, lambda: ann.data, ann.size, store)
    assert root is not None
    files, dirs = server_entries(str(root))
    if not files:
        st.warning(f"No .json file under the data root ({DATA_ROOT_ENV}).")
        return None
    c1, c2 = st.columns(2)
    rel = c1.selectbox("Annotation file", files, key="dd_server_json")
    img_choice = c2.selectbox(
        "Images folder", ["(none)", *dirs], index=guess_images_dir(rel, dirs), key=f"dd_server_images:{rel}"
    )
    try:
        path = safe_join(root, rel)
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            st.error(f"{rel} is {size / 1e6:.0f} MB; the limit is {MAX_JSON_BYTES / 1e6:.0f} MB.")
            return None
        key = file_digest(str(path), path.stat().st_mtime_ns, size)
        store = None if img_choice == "(none)" else FolderImages(safe_join(root, img_choice))
    except (OSError, ValueError) as exc:
        st.error(f"Cannot read {rel}: {exc}")
        return None
    return Source(rel, key, path.read_bytes, size, store)


# ---------------------------------------------------------------- configuration


def scan_config_widgets() -> ScanConfig:
    """Sidebar controls: convention, input size, thresholds, low-quality matches."""
    st.subheader("Scan configuration")
    convention = st.selectbox("Anchor convention", CONVENTIONS, key=kept("dd_convention"))
    c1, c2 = st.columns(2)
    min_size = c1.number_input("Short side", 128, 2048, 800, 32, key=kept("dd_min"))
    max_size = c2.number_input("Long side max", 128, 4096, 1333, 1, key=kept("dd_max"))
    c3, c4 = st.columns(2)
    pos = c3.number_input("Positive IoU ≥", 0.05, 1.0, 0.5, 0.05, key=kept("dd_pos"))
    neg = c4.number_input("Negative IoU <", 0.05, 1.0, 0.4, 0.05, key=kept("dd_neg"))
    low_quality = st.toggle("Low-quality matches", value=True, key=kept("dd_lq"), help="allow_low_quality_matches")
    if neg > pos:
        st.warning(f"Negative threshold {neg} is above the positive one {pos}: using {pos} for both.")
        neg = pos
    anchors = default_config(convention, min_size=int(min_size), max_size=int(max(min_size, max_size)))
    return ScanConfig(anchors=anchors, pos_thresh=float(pos), neg_thresh=float(neg), low_quality=bool(low_quality))


# ---------------------------------------------------------------- the scan, cached


def load_and_scan(source: Source, config: ScanConfig) -> tuple[CocoDataset, ScanResult]:
    """Load and scan with a progress bar, or return the cached result for the same bytes and configuration.

    Raises:
        ValueError: the annotation bytes are not a COCO instances file (the message says why).
    """
    # the name is in the key too: the dataset carries it, and one user's file name is not shown to another
    key = f"{source.key}:{source.name}:{config!r}"
    cache = shared_cache("scans", SCAN_CACHE_ENTRIES)
    hit = cache.get(key)
    if hit is not None:
        return hit
    bar = st.progress(0.0, text=f"Reading {source.name} ({source.size / 1e6:.1f} MB)…")
    try:
        try:
            data = source.read()
        except OSError as exc:
            raise ValueError(f"cannot read the file: {exc.strerror or exc}") from None
        ds = load_coco(data, name=source.name, max_bytes=MAX_JSON_BYTES)
        del data

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Scanning {done:,} / {total:,} images…")

        result = scan_dataset(ds, config, progress=progress)
    finally:
        bar.empty()
    with contextlib.suppress(TooLargeError):  # larger than the whole cache budget: used for this run only
        cache.put(key, (ds, result))
    return ds, result


# ---------------------------------------------------------------- images


def anchor_view(
    key: str,
    file_name: str,
    config: ScanConfig,
    show_ignored: bool,
    store: ImageStore,
    boxes_input: np.ndarray,
    classes: list[str],
    crowd_input: np.ndarray,
) -> tuple[np.ndarray | None, dict, str]:
    """(picture, summary, message) for one image of the dataset, cached per dataset key (annotation digest and
    image row: the boxes, classes and crowd regions come from them), file, config, image store (its ``identity``)
    and the server's pixel budget."""
    args = (key, file_name, config, show_ignored, store.identity, limits().max_pixels)
    return _anchor_view(*args, store, boxes_input, classes, crowd_input)


@st.cache_data(max_entries=8, show_spinner=False)
def _anchor_view(
    key: str,
    file_name: str,
    config: ScanConfig,
    show_ignored: bool,
    store_id: str,
    max_pixels: int,
    _store: ImageStore,
    _boxes_input: np.ndarray,
    _classes: list[str],
    _crowd_input: np.ndarray,
) -> tuple[np.ndarray | None, dict, str]:
    data = _store.read(file_name)
    if data is None:
        return None, {}, f"{file_name} is not among the images ({_store.description})."
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except ValueError as exc:
        return None, {}, f"{file_name}: {exc}"
    picture, summary = labeled_anchor_image(
        image, _boxes_input, config, classes=_classes, crowd_input=_crowd_input, show_ignored=show_ignored
    )
    return picture, summary, ""


def crops(
    key: str, store: ImageStore, rows: list[tuple[str, tuple[float, float, float, float], str]], limit: int = 24
) -> list[tuple[np.ndarray, str]]:
    """Crops around boxes: rows of (file_name, original-scale xyxy box, caption); unreadable images are skipped.
    Cached per ``key`` (what ``rows`` derive from: annotation digest and configuration), image store (its
    ``identity``) and the server's pixel budget."""
    return _crops(key, store.identity, limits().max_pixels, store, rows, limit)


@st.cache_data(max_entries=4, show_spinner=False)
def _crops(
    key: str,
    store_id: str,
    max_pixels: int,
    _store: ImageStore,
    _rows: list[tuple[str, tuple[float, float, float, float], str]],
    limit: int,
) -> list[tuple[np.ndarray, str]]:
    out: list[tuple[np.ndarray, str]] = []
    decoded: dict[str, np.ndarray | None] = {}
    for file_name, box, caption in _rows[:limit]:
        if file_name not in decoded:
            data = _store.read(file_name)
            try:
                decoded[file_name] = decode_image(data, max_pixels=max_pixels) if data is not None else None
            except ValueError:
                decoded[file_name] = None
        image = decoded[file_name]
        if image is None:
            continue
        try:
            out.append((box_crop(image, box), caption))
        except ValueError:
            continue
    return out


@st.cache_data(max_entries=6, show_spinner="Preparing the file…")
def export_bytes(key: str, fmt: str, _df) -> bytes:
    """A table as CSV or Parquet bytes, once per ``key`` (dataset digest, configuration, table name) and format."""
    if fmt == "csv":
        return _df.to_csv(index=False).encode()
    buf = io.BytesIO()
    _df.to_parquet(buf, index=False)
    return buf.getvalue()


def export_buttons(key: str, name: str, df, *, widget_key: str) -> None:
    """CSV and Parquet download buttons for a table (bytes built once and cached)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_") or "table"
    c1, c2, _ = st.columns([1, 1, 4])
    c1.download_button(
        "⬇ CSV", export_bytes(f"{key}:{name}", "csv", df), f"{slug}.csv", "text/csv", key=f"{widget_key}-csv"
    )
    c2.download_button(
        "⬇ Parquet",
        export_bytes(f"{key}:{name}", "parquet", df),
        f"{slug}.parquet",
        "application/octet-stream",
        key=f"{widget_key}-parquet",
    )
