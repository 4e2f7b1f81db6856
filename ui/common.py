"""Streamlit helpers shared by every page: page setup, sample data, downloads, the compute-device line."""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer import synthetic
from explorer.cache import BoundedCache
from explorer.dataset.coco import CocoDataset, load_coco
from explorer.images import decode_image
from explorer.settings import limits

T = TypeVar("T")

#: Page files, titles and Material icons, in navigation order. Navigation lists only the files that exist.
HOME: tuple[str, str, str] = ("app.py", "Home", ":material/center_focus_strong:")
PAGES: tuple[tuple[str, str, str], ...] = (
    ("pages/1_Loss_lab.py", "Loss lab", ":material/show_chart:"),
    ("pages/2_Anchor_lab.py", "Anchor lab", ":material/anchor:"),
    ("pages/3_Dataset_diagnostics.py", "Dataset diagnostics", ":material/query_stats:"),
    ("pages/4_Live_detections.py", "Live detections", ":material/my_location:"),
    ("pages/5_Model_scan.py", "Model scan", ":material/analytics:"),
)

ROOT = Path(__file__).resolve().parent.parent
#: The largest COCO JSON a page reads (instances_train2017.json is 448 MB).
MAX_JSON_BYTES = 1_000_000_000

#: Layout rules for a laptop and a narrow window. Streamlit's columns shrink without limit, so four metrics in a
#: 480 px main area read "163,..." and a segmented control loses its last option: a column narrower than 8.5rem
#: (a chart's than 22rem) wraps onto the next line instead (the row already has ``flex-wrap: wrap``). The sidebar's
#: pairs of number inputs keep their columns.
LAYOUT_CSS = """
<style>
[data-testid="stMain"] [data-testid="stColumn"] { min-width: min(8.5rem, 100%); }
[data-testid="stMain"] [data-testid="stColumn"]:has([data-testid="stPlotlyChart"]) { min-width: min(22rem, 100%); }
[data-testid="stMetricValue"] { font-size: clamp(1.5rem, 2.4vw, 2.25rem); }
</style>
"""


def page_setup(title: str, icon: str = "🔭") -> None:
    """Configure the page (wide layout, tab title, favicon), draw the navigation and the title. Call first.

    The navigation is drawn here rather than by Streamlit's automatic `pages/` menu, so that the home page is
    called "Home" and every entry has an icon; `client.showSidebarNavigation = false` hides the automatic one.
    """
    st.set_page_config(page_title=f"{title} · FocalScope", page_icon=icon, layout="wide")
    st.html(LAYOUT_CSS)
    entries = [HOME, *existing_pages()]
    if _served_from_app():
        with st.sidebar:
            st.markdown("### FocalScope")
            for path, label, material in entries:
                st.page_link(path, label=label, icon=material)
            st.divider()
    material = next((m for _, label, m in entries if label == title), HOME[2])
    st.title(f"{material} {title}")
    _warm_scan_kernel()


@st.cache_resource(show_spinner=False)
def _warm_scan_kernel() -> threading.Thread:
    """Once per server process, in the background: the dataset scan's compiled kernel (about 10 s the first time on
    a machine, then loaded from numba's cache), so that the first scan a user starts does not wait for it."""

    def warm() -> None:
        from explorer.dataset.scan_cpu import warm_up

        warm_up()

    thread = threading.Thread(target=warm, name="focalscope-scan-warm-up", daemon=True)
    thread.start()
    return thread


def page_link(path: str, label: str, icon: str) -> None:
    """A link to another page of the app (nothing when a page runs on its own, where links cannot resolve)."""
    if _served_from_app():
        st.page_link(path, label=label, icon=icon)


def _served_from_app() -> bool:
    """True when the entrypoint is app.py (page links resolve); False when a page runs on its own (AppTest)."""
    ctx = get_script_run_ctx()
    return ctx is not None and Path(ctx.main_script_path).resolve() == ROOT / HOME[0]


def existing_pages() -> list[tuple[str, str, str]]:
    """The entries of PAGES whose file exists."""
    return [p for p in PAGES if (ROOT / p[0]).exists()]


@st.cache_resource(max_entries=1, show_spinner="Generating the sample dataset (first run only)…")
def sample_dataset_path() -> Path:
    """Path of the built-in sample dataset's annotations.json (generated into the cache on first use)."""
    return synthetic.sample_dataset()


@st.cache_resource(max_entries=1, show_spinner=False)
def sample_dataset() -> CocoDataset:
    """The sample dataset, read by the one COCO reader (shared, read-only)."""
    return load_coco(sample_dataset_path())


@st.cache_data(max_entries=4, show_spinner=False)
def sample_dataset_image(file_name: str) -> np.ndarray:
    """One image of the sample dataset, (H, W, 3) uint8 RGB (decoded with the same safe decoder as uploads)."""
    path = Path(sample_dataset_path()).parent / "images" / Path(file_name).name
    return decode_image(path.read_bytes())


@st.cache_resource(max_entries=1)
def device_label() -> str:
    """'CUDA · <device name>' when a GPU is usable, else 'CPU'."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA · {torch.cuda.get_device_name(0)}"
    return f"CPU · {torch.get_num_threads()} threads"


@st.cache_resource(max_entries=16, show_spinner=False)
def _shared_cache(name: str, max_entries: int, max_bytes: int) -> BoundedCache:
    return BoundedCache(max_entries, max_bytes)


def shared_cache(name: str, max_entries: int) -> BoundedCache:
    """The server-wide cache ``name`` (shared by every session): at most ``max_entries`` values within
    ``limits().cache_bytes`` bytes (:func:`explorer.cache.nbytes`), least recently used evicted first."""
    return _shared_cache(name, max_entries, limits().cache_bytes)


def cached(name: str, key: Hashable, build: Callable[[], T], *, max_entries: int, spinner: str | None = None) -> T:
    """``build()`` once per ``key`` in the shared cache ``name`` (see :func:`shared_cache`). The key must name
    everything ``build`` reads. A value larger than the whole budget is returned without being kept. Values are
    shared between sessions: read them, never write to them."""
    cache = shared_cache(name, max_entries)
    value = cache.get(key)
    if value is not None:
        return value
    with st.spinner(spinner) if spinner else nullcontext():
        return cache.get_or_create(key, build, must_fit=False)


def pixel_limit_help() -> str:
    """The uploaders' note on the server's pixel budget."""
    return f"Images up to {limits().max_pixels / 1e6:,.0f} megapixels (this server's FOCALSCOPE_MAX_PIXELS)."


def decode_upload(key: str, data: bytes) -> np.ndarray:
    """Decode an uploaded image once per content digest ``key`` within the server's pixel budget
    (``limits().max_pixels``); shared and read-only. Raises ValueError for a bad or too large image (not cached)."""
    max_pixels = limits().max_pixels

    def build() -> np.ndarray:
        image = decode_image(data, max_pixels=max_pixels)
        image.setflags(write=False)
        return image

    return cached("images", (key, max_pixels), build, max_entries=4, spinner="Decoding the image…")


# ---------------------------------------------------------------- inputs kept for the session

#: Session keys (not widget keys) of the kept widget values and uploads: Streamlit drops a widget's state when a
#: run does not draw it (another page, a branch not taken), these survive until the session ends.
KEPT_VALUES = "_kept_values"
KEPT_UPLOADS = "_kept_uploads"


def kept(key: str) -> str:
    """A widget key whose value is kept for the session: ``st.slider(..., key=kept("det_gamma"))``.

    Each run copies the widget's value to :data:`KEPT_VALUES` and writes it back through the Session State API
    before the widget is drawn. Streamlit drops a widget's state when a run ends without it (the user went to
    another page): the value then comes back from the copy. And a widget that a run skipped (a branch hid it, the
    page stopped early) keeps its value on the server while the browser redraws it at its default: writing the
    value back makes Streamlit send it, so the widget shows the value the page computes with. Not for buttons,
    uploaders or editors (their values cannot be set), nor for choices whose options change.
    """
    state = st.session_state
    values = state.setdefault(KEPT_VALUES, {})
    if key in state:
        values[key] = state[key]
    if key in values:
        state[key] = values[key]
    return key


def set_kept(values: dict[str, object]) -> None:
    """Give kept widgets these values, on this page or another (``{"al_sizes": "..."}``): call from a button's
    ``on_click`` (a widget drawn in this run cannot be set after it is drawn)."""
    kept_values = st.session_state.setdefault(KEPT_VALUES, {})
    for key, value in values.items():
        kept_values[key] = value
        st.session_state[key] = value


@dataclass(frozen=True)
class Upload:
    """An uploaded file kept in the session: its name, bytes and Streamlit's id of the upload."""

    name: str
    data: bytes
    file_id: str

    @property
    def size(self) -> int:
        return len(self.data)


def kept_upload(label: str, *, key: str, multiple: bool = False, where=st, **kwargs) -> list[Upload]:
    """A file uploader whose files stay for the session (a page change empties Streamlit's uploader).

    While the uploader is empty, the files uploaded earlier are used; a caption names them, with a button to
    forget them. The bytes live in this session's state only (released with the session, never shared).

    Returns:
        The files (at most one unless ``multiple``); empty when there are none.
    """
    store: dict[str, list[Upload]] = st.session_state.setdefault(KEPT_UPLOADS, {})
    value = where.file_uploader(label, key=key, accept_multiple_files=multiple, **kwargs)
    files = [f for f in (value if multiple else [value]) if f is not None]
    if files:
        old = {u.file_id: u for u in store.get(key, [])}
        store[key] = [old.get(f.file_id) or Upload(f.name, f.getvalue(), f.file_id) for f in files]
        return store[key]
    earlier = store.get(key, [])
    if earlier:
        names = ", ".join(u.name for u in earlier)
        where.caption(f"Using **{md_escape(names)}** (uploaded earlier).")
        where.button("Clear", key=f"{key}_clear", on_click=store.pop, args=(key, None), help=f"Forget {names}")
    return earlier


def kept_file(label: str, *, key: str, where=st, **kwargs) -> Upload | None:
    """:func:`kept_upload` of one file: the file, or None."""
    files = kept_upload(label, key=key, where=where, **kwargs)
    return files[0] if files else None


def md_escape(text: str) -> str:
    """Escape Markdown so that messages show names such as ``__main__.Foo`` or ``*.pt`` literally; URLs are kept
    as they are (Streamlit links them, and a backslash inside one would show)."""
    parts = re.split(r"(https?://[^\s)>]+)", text)
    return "".join(p if i % 2 else re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", p) for i, p in enumerate(parts))


def digest(data: bytes) -> str:
    """SHA-256 hex digest of bytes: the cache key of uploads (Streamlit's own hashing samples large inputs)."""
    return hashlib.sha256(data).hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "data"


def download_buttons(
    *,
    name: str,
    df: pd.DataFrame | None = None,
    fig: go.Figure | None = None,
    key: str | None = None,
    parquet: bool = False,
) -> None:
    """Download buttons in one row: the data as CSV (and Parquet), the figure as interactive HTML.

    The files are built only when a button is clicked (Streamlit calls the data callable then), so a rerun pays
    nothing for them. PNG export of a figure is the camera button of the plotly toolbar.
    """
    slug = _slug(name)
    key = key or slug
    buttons: list[tuple[str, Callable[[], bytes], str, str]] = []
    if df is not None:
        buttons.append(("⬇ CSV", lambda: df.to_csv(index=False).encode(), "csv", "text/csv"))
        if parquet:
            buttons.append(("⬇ Parquet", lambda: _parquet_bytes(df), "parquet", "application/octet-stream"))
    if fig is not None:
        buttons.append(("⬇ HTML figure", lambda: fig.to_html(include_plotlyjs="cdn").encode(), "html", "text/html"))
    for col, (label, data, ext, mime) in zip(st.columns(max(2, len(buttons)), gap="small"), buttons, strict=False):
        col.download_button(label, data, f"{slug}.{ext}", mime, key=f"{key}-{ext}")


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def plot(fig: go.Figure, *, key: str | None = None, theme: str | None = "streamlit") -> None:
    """Show a plotly figure at full width with the toolbar's PNG export named after the chart.

    ``theme=None`` keeps the figure's own colour scales (Streamlit's chart theme replaces heatmap scales); the
    figure then gets a dark template with a transparent background to sit on the app's theme.
    """
    if theme is None:
        fig.update_layout(template="plotly_dark", paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else "focalscope"
    st.plotly_chart(
        fig,
        width="stretch",
        key=key,
        theme=theme,
        config={"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": _slug(title), "scale": 2}},
    )
