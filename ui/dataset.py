"""Streamlit-aware helpers of Dataset diagnostics: the scan configuration, the bounded scan cache, image access
(the data sources are :mod:`ui.sources`, shared with the Model scan)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
import streamlit as st

from explorer.anchors.grid import CONVENTIONS, default_config
from explorer.cache import TooLargeError
from explorer.dataset.coco import CocoDataset
from explorer.dataset.image_stores import ImageStore
from explorer.dataset.scan import STREAM_BOXES_MIN, scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_result import ScanResult
from explorer.dataset.view import box_crop, labeled_anchor_image
from explorer.images import decode_image
from explorer.settings import limits
from explorer.synthetic import cache_root
from ui.anchors import checked_custom_config, custom_anchor_text
from ui.common import kept, shared_cache
from ui.sources import Source

#: Scans kept in memory (per server process, within ``limits().cache_bytes``): a COCO-train scan holds about 200 MB.
SCAN_CACHE_ENTRIES = 3
#: Rows shown in the page's tables of boxes (the exports hold every row).
TABLE_ROWS = 2000


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
    if st.toggle(
        "Custom anchors", key=kept("dd_custom"),
        help="Any sizes per level and aspect ratios instead of RetinaNet's default (the Anchor fit tab sets them).",
    ):  # fmt: skip
        parsed = custom_anchor_text("dd", anchors.sizes, anchors.aspect_ratios)
        anchors = checked_custom_config(parsed, anchors)
    return ScanConfig(anchors=anchors, pos_thresh=float(pos), neg_thresh=float(neg), low_quality=bool(low_quality))


# ---------------------------------------------------------------- the scan, cached


def load_and_scan(source: Source, config: ScanConfig) -> tuple[CocoDataset, ScanResult]:
    """Load and scan with a progress bar, or return the cached result for the same bytes and configuration.

    Raises:
        ValueError: the source is not a dataset of its format (the message says why).
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
            ds = source.load()
        except OSError as exc:
            raise ValueError(f"cannot read the file: {exc.strerror or exc}") from None

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Scanning {done:,} / {total:,} images…")

        result = scan_dataset(ds, config, progress=progress, boxes_to=_boxes_file(ds, key))
    finally:
        bar.empty()
    with contextlib.suppress(TooLargeError):  # larger than the whole cache budget: used for this run only
        cache.put(key, (ds, result))
    return ds, result


def _boxes_file(ds: CocoDataset, key: str) -> Path | None:
    """Where the scan of a dataset of more than ``STREAM_BOXES_MIN`` boxes streams its per-box table (a Parquet
    file in the cache folder, named by the cache key's digest); None for a smaller one (kept in memory)."""
    if ds.num_annotations <= STREAM_BOXES_MIN:
        return None
    folder = cache_root() / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"boxes-{hashlib.sha256(key.encode()).hexdigest()[:24]}.parquet"


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
