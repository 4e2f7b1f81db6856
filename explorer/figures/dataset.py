"""Plotly figures for Dataset diagnostics: distributions over images and boxes, classes, levels, box centres.

Every builder takes the tables of an :class:`explorer.dataset.scan_result.ScanResult` (pandas DataFrames) and returns a
``go.Figure``; nothing here loops over annotations in Python.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.dataset.coco import AREA_MEDIUM, AREA_SMALL
from explorer.labels import COLORS, DISPLAY_ORDER

#: The scan's count columns and their display names, in display order (explorer.labels).
LABEL_TITLES: dict[str, str] = {label.column: label.display for label in DISPLAY_ORDER}
#: The label colours (explorer.labels), keyed by the scan's column names.
LABEL_CSS: dict[str, str] = {label.column: COLORS[label.display] for label in DISPLAY_ORDER}
SIZE_CSS: dict[str, str] = {"small": "rgb(213,94,0)", "medium": "rgb(0,114,178)", "large": "rgb(0,158,115)"}
TAG_CSS: dict[str, str] = {
    "under-represented": "rgb(213,94,0)",
    "over-represented": "rgb(0,114,178)",
    "": "rgb(150,150,150)",
    "absent": "rgb(90,90,90)",
}


def _layout(fig: go.Figure, title: str, x: str, y: str, *, height: int = 340) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=height,
        margin={"t": 50, "b": 40, "l": 60, "r": 20},
        legend={"orientation": "h", "y": -0.25},
        bargap=0.0,
    )
    return fig


def _bars(
    values: np.ndarray, *, nbins: int, color: str, name: str, log_x: bool = False, edges: np.ndarray | None = None
) -> go.Bar:
    """A histogram binned here with numpy (the browser gets nbins bars, not one value per box)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if log_x:
        v = np.log10(v[v > 0])
    if edges is None:
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, nbins + 1)
    counts, edges = np.histogram(v, bins=edges)
    return go.Bar(
        x=(edges[:-1] + edges[1:]) / 2,
        y=counts,
        width=np.diff(edges),
        marker_color=color,
        name=name,
        customdata=np.stack([edges[:-1], edges[1:]], axis=1),
        hovertemplate="[%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{y:,}<extra>" + name + "</extra>",
    )


def positives_per_image(images: pd.DataFrame, *, nbins: int = 60) -> go.Figure:
    """Histogram of positive anchors per image (images without boxes have none)."""
    fig = go.Figure(_bars(images["positives"], nbins=nbins, color=LABEL_CSS["positives"], name="images"))
    fig.add_vline(x=float(images["positives"].mean()) if len(images) else 0, line_dash="dash", annotation_text="mean")
    return _layout(fig, "Positive anchors per image", "positive anchors", "images")


def pos_neg_ratio(images: pd.DataFrame, *, nbins: int = 60) -> go.Figure:
    """Histogram of log10(negatives per positive) per image: the imbalance the classifier sees."""
    pos = images["positives"].to_numpy(dtype=np.float64)
    neg = (images["hard_negatives"] + images["easy_negatives"]).to_numpy(dtype=np.float64)
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), np.nan)
    fig = go.Figure(_bars(ratio, nbins=nbins, color="rgb(204,121,167)", name="images", log_x=True))
    no_pos = int((pos == 0).sum())
    title = "Negatives per positive, per image (log10)"
    if no_pos:
        title += f" — {no_pos:,} image(s) without any positive not shown"
    return _layout(fig, title, "log10(negatives / positives)", "images")


def boxes_per_image(images: pd.DataFrame) -> go.Figure:
    """Bar chart of the number of (non-crowd) boxes per image."""
    counts = images["boxes"].value_counts().sort_index()
    fig = go.Figure(go.Bar(x=counts.index, y=counts.to_numpy(), marker_color="rgb(0,114,178)", name="images"))
    return _layout(fig, "Boxes per image", "boxes (non-crowd)", "images")


def box_sizes(boxes: pd.DataFrame, *, nbins: int = 80) -> go.Figure:
    """Histogram of sqrt(area) at the original scale, split into COCO's small / medium / large."""
    fig = go.Figure()
    side = np.sqrt(np.maximum(boxes["area"].to_numpy(dtype=np.float64), 0))
    top = float(np.percentile(side, 99.5)) if len(side) else 1.0
    edges = np.linspace(0.0, max(top, 1.0), nbins + 1)
    for name in ("small", "medium", "large"):
        sel = (boxes["size"] == name).to_numpy()
        share = sel.mean() if len(sel) else 0.0
        fig.add_trace(
            _bars(side[sel], nbins=nbins, color=SIZE_CSS[name], name=f"{name} ({100 * share:.1f} %)", edges=edges)
        )
    for edge in (AREA_SMALL, AREA_MEDIUM):
        fig.add_vline(x=float(np.sqrt(edge)), line_dash="dot", line_color="white")
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    return _layout(
        fig, "Box size (√area, original scale; 99.5 % shown)", "√area (px), dotted: COCO's 32 and 96", "boxes"
    )


def aspect_ratios(boxes: pd.DataFrame, *, nbins: int = 60) -> go.Figure:
    """Histogram of box aspect ratios h/w on a log2 axis, with the default anchor ratios marked."""
    w = boxes["width"].to_numpy(dtype=np.float64)
    h = boxes["height"].to_numpy(dtype=np.float64)
    ratio = np.log2(np.where((w > 0) & (h > 0), h / np.where(w > 0, w, 1), np.nan))
    fig = go.Figure(_bars(ratio, nbins=nbins, color="rgb(86,180,233)", name="boxes"))
    for r, pos in ((0.5, "top left"), (1.0, "top"), (2.0, "top right")):
        fig.add_vline(x=float(np.log2(r)), line_dash="dot", annotation_text=f"{r:g}", annotation_position=pos)
    return _layout(fig, "Box aspect ratio h/w (log2; anchors at 0.5, 1, 2)", "log2(h / w)", "boxes")


def class_counts(per_class: pd.DataFrame, *, top: int = 80) -> go.Figure:
    """Instances per class (bars coloured by representation tag), positives per instance on a second axis."""
    df = per_class.sort_values("instances", ascending=False).head(top)
    fig = go.Figure()
    for tag, color in TAG_CSS.items():
        sel = df[df["tag"] == tag]
        if len(sel):
            fig.add_bar(
                x=sel["category"],
                y=sel["instances"],
                name=tag or "balanced",
                marker_color=color,
                customdata=np.stack([sel["positives_per_instance"].fillna(0), sel["representation"].fillna(0)], 1),
                hovertemplate="%{x}: %{y:,} boxes<br>%{customdata[0]:.1f} positives per box"
                "<br>%{customdata[1]:.2f}x a uniform share of positives<extra></extra>",
            )
    fig.add_scatter(
        x=df["category"],
        y=df["positives_per_instance"],
        name="positives per box",
        yaxis="y2",
        mode="markers",
        marker={"color": "white", "size": 6},
    )
    fig.update_layout(
        yaxis2={"overlaying": "y", "side": "right", "title": "positives per box", "showgrid": False},
        xaxis={"categoryorder": "array", "categoryarray": list(df["category"]), "tickangle": -45},
    )
    return _layout(fig, "Instances per class (colour: share of positive anchors)", "", "instances", height=420)


def level_labels(levels: pd.DataFrame, *, normalize: bool = True) -> go.Figure:
    """Stacked bars per pyramid level: positives, ignored, hard and easy negatives (shares or counts)."""
    fig = go.Figure()
    for col in ("positives", "ignored", "hard_negatives", "easy_negatives"):
        fig.add_bar(
            x=levels["level"],
            y=levels[col],
            name=LABEL_TITLES[col],
            marker_color=LABEL_CSS[col],
            hovertemplate="%{x}: %{y:,} " + LABEL_TITLES[col] + "<extra></extra>",
        )
    fig.update_layout(barmode="stack", barnorm="percent" if normalize else None)
    return _layout(
        fig, "Anchors per level by label", "level", "share of the level's anchors (%)" if normalize else "anchors"
    )


def positives_per_level(levels: pd.DataFrame) -> go.Figure:
    """Positive anchors per level (bars) with each level's share of all positives."""
    total = max(int(levels["positives"].sum()), 1)
    fig = go.Figure(
        go.Bar(
            x=levels["level"],
            y=levels["positives"],
            marker_color=LABEL_CSS["positives"],
            text=[f"{100 * v / total:.1f} %" for v in levels["positives"]],
            textposition="outside",
        )
    )
    return _layout(fig, "Positive anchors per level", "level", "positive anchors")


def centre_heatmap(boxes: pd.DataFrame, *, bins: int = 40) -> go.Figure:
    """2-D histogram of box centres relative to the image (0..1 in x and y)."""
    x = np.clip(boxes["cx_rel"].to_numpy(dtype=np.float64), 0, 1)
    y = np.clip(boxes["cy_rel"].to_numpy(dtype=np.float64), 0, 1)
    hist, _, _ = np.histogram2d(y, x, bins=bins, range=[[0, 1], [0, 1]])
    centres = (np.arange(bins) + 0.5) / bins
    fig = go.Figure(go.Heatmap(z=hist, x=centres, y=centres, colorscale="Viridis", colorbar={"title": "boxes"}))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _layout(fig, "Box centres (relative to the image)", "x / width", "y / height", height=420)


def no_positive_by_size(per_size: pd.DataFrame) -> go.Figure:
    """Share of boxes without a positive anchor and positive only through low-quality matches, per size."""
    fig = go.Figure()
    fig.add_bar(
        x=per_size["size"], y=100 * per_size["no_positive_share"].fillna(0), name="no positive anchor",
        marker_color="rgb(230,0,0)",
    )  # fmt: skip
    fig.add_bar(
        x=per_size["size"], y=100 * per_size["low_quality_only_share"].fillna(0),
        name="positive only via low-quality match", marker_color="rgb(240,228,66)",
    )  # fmt: skip
    fig.update_layout(barmode="group")
    return _layout(fig, "Boxes the matcher struggles with, by COCO size", "size", "% of the size's boxes")


def problems_by_kind(summary: pd.DataFrame) -> go.Figure:
    """Validation problems counted by kind, coloured by severity."""
    colors = {"error": "rgb(230,0,0)", "warning": "rgb(255,140,0)", "info": "rgb(86,180,233)"}
    fig = go.Figure()
    for sev, color in colors.items():
        sel = summary[summary["severity"] == sev]
        if len(sel):
            fig.add_bar(x=sel["kind"], y=sel["count"], name=sev, marker_color=color)
    return _layout(fig, "Validation problems by kind", "", "records")
