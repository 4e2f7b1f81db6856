"""Streamlit helpers shared by every page: page setup, sample data, downloads, the compute-device line."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer import synthetic
from explorer.images import decode_image

#: Page files, titles and Material icons, in navigation order. Navigation lists only the files that exist.
HOME: tuple[str, str, str] = ("app.py", "Home", ":material/center_focus_strong:")
PAGES: tuple[tuple[str, str, str], ...] = (
    ("pages/1_Loss_lab.py", "Loss lab", ":material/show_chart:"),
    ("pages/2_Anchor_lab.py", "Anchor lab", ":material/anchor:"),
    ("pages/3_Dataset_diagnostics.py", "Dataset diagnostics", ":material/query_stats:"),
    ("pages/4_Live_detections.py", "Live detections", ":material/my_location:"),
)

ROOT = Path(__file__).resolve().parent.parent

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


@st.cache_data(max_entries=1, show_spinner=False)
def sample_coco() -> dict:
    """The sample dataset's COCO dict."""
    return json.loads(Path(sample_dataset_path()).read_text())


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
