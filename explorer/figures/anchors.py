"""Plotly figures for the Anchor lab: per-level label counts, threshold sweep, positives per GT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.labels import COLORS
from explorer.overlay import LEVEL_COLORS


def _css(rgb: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*rgb)


#: The label colours (explorer.labels: the same as the image overlays') and the level colours as CSS.
LABEL_CSS: dict[str, str] = {name: COLORS[name] for name in ("positive", "ignored", "hard negative", "easy negative")}
LEVEL_CSS: tuple[str, ...] = tuple(_css(rgb) for rgb in LEVEL_COLORS)


def level_label_bar(
    counts: Mapping[str, Sequence[int]], level_names: Sequence[str], *, normalize: bool = False, log_y: bool = False
) -> go.Figure:
    """Bars of anchors per level split by label (positive, ignored, hard negative, easy negative).

    Stacked for counts and shares. With ``log_y`` the bars are grouped side by side instead: on a log axis a
    stacked segment's height is not its count (a segment on top of 100k looks like a sliver even at 35k).

    Args:
        counts: from :func:`explorer.anchors.stats.per_level_counts` (keys "positive", "ignored", "hard negative",
            "easy negative"), one value per level.
        level_names: e.g. ["P3", ..., "P7"].
        normalize: show shares (percent of the level) instead of counts; stacked, ``log_y`` is ignored.
        log_y: logarithmic count axis (easy negatives dwarf everything else), bars grouped.
    """
    log = log_y and not normalize
    fig = go.Figure()
    for name in ("positive", "ignored", "hard negative", "easy negative"):
        vals = np.asarray(counts[name], dtype=np.int64)
        fig.add_bar(
            x=list(level_names),
            y=vals,
            name=name,
            marker_color=LABEL_CSS[name],
            hovertemplate="%{x}: %{y:,} " + name + "<extra></extra>",
        )
    fig.update_layout(
        barmode="group" if log else "stack",
        barnorm="percent" if normalize else None,
        title="Anchors per level by label" + (" (log axis: bars side by side)" if log else ""),
        xaxis_title="pyramid level",
        yaxis_title="share of the level's anchors (%)" if normalize else "anchors",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 50, "b": 40, "l": 60, "r": 20},
        height=380,
    )
    if log:
        fig.update_yaxes(type="log")
    return fig


def threshold_sweep_figure(sweep: Mapping[str, np.ndarray], *, current: float | None = None) -> go.Figure:
    """Positives per GT and unmatched GTs as the positive IoU threshold moves (from
    :func:`explorer.anchors.stats.threshold_sweep`)."""
    t = np.asarray(sweep["pos_thresh"])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=t, y=sweep["mean_pos_per_gt"], name="mean positives per GT", mode="lines+markers")
    fig.add_scatter(x=t, y=sweep["median_pos_per_gt"], name="median positives per GT", mode="lines+markers",
                    line={"dash": "dot"})  # fmt: skip
    fig.add_scatter(x=t, y=sweep["unmatched_gt"], name="GTs with no positive", mode="lines+markers",
                    line={"color": "crimson"}, secondary_y=True)  # fmt: skip
    fig.add_scatter(x=t, y=sweep["low_quality_only_gt"], name="GTs positive only by low-quality match",
                    mode="lines+markers", line={"color": "darkorange", "dash": "dash"}, secondary_y=True)  # fmt: skip
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", line_color="gray", annotation_text="current")
    fig.update_layout(
        title="Threshold sweep (negative threshold capped at the positive one)",
        xaxis_title="positive IoU threshold",
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 50, "b": 40, "l": 60, "r": 60},
        height=400,
    )
    fig.update_yaxes(title_text="positive anchors per GT", secondary_y=False, rangemode="tozero")
    top = max(1, int(np.nanmax(np.concatenate([sweep["unmatched_gt"], sweep["low_quality_only_gt"]]))))
    fig.update_yaxes(title_text="GTs", secondary_y=True, rangemode="tozero", dtick=max(1, -(-top // 5)))
    return fig


def positives_per_gt_figure(
    gt_sizes: np.ndarray, num_positive: np.ndarray, best_level: np.ndarray, level_names: Sequence[str]
) -> go.Figure:
    """Scatter of GT size (sqrt area, resized px) against its positive anchors, coloured by its best level."""
    fig = go.Figure()
    sizes = np.asarray(gt_sizes, dtype=np.float64)
    npos = np.asarray(num_positive)
    lv = np.asarray(best_level)
    for li, name in enumerate(level_names):
        sel = lv == li
        if not sel.any():
            continue
        idx = np.nonzero(sel)[0]
        fig.add_scatter(
            x=sizes[sel],
            y=npos[sel],
            mode="markers",
            name=f"best anchor on {name}",
            marker={"color": LEVEL_CSS[li % len(LEVEL_CSS)], "size": 9, "line": {"width": 1, "color": "white"}},
            customdata=idx,
            hovertemplate="GT %{customdata}: size %{x:.0f} px, %{y} positives<extra></extra>",
        )
    fig.update_layout(
        title="Positive anchors per GT vs GT size",
        xaxis_title="GT size √(w·h), input pixels",
        yaxis_title="positive anchors",
        xaxis_type="log",
        margin={"t": 50, "b": 40, "l": 60, "r": 20},
        height=380,
        legend={"orientation": "h", "y": -0.25},
    )
    # Ticks at powers of two, the anchor sizes of a pyramid (plotly's default log ticks read "3 4 5 ... 100 2 3").
    ticks = [2**k for k in range(1, 14)]
    fig.update_xaxes(tickvals=ticks, ticktext=[str(t) for t in ticks])
    return fig


def iou_hist_figure(max_iou: np.ndarray, *, pos_thresh: float | None, neg_thresh: float | None) -> go.Figure:
    """Histogram of the per-anchor max IoU over anchors that overlap some GT (log count axis).

    The threshold lines are drawn only for thresholds that are given (None for ATSS, which has no fixed IoU
    threshold: each GT gets its own mean + std).
    """
    vals = np.asarray(max_iou)
    vals = vals[vals > 0]
    counts, edges = np.histogram(vals, bins=50, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=counts,
            width=edges[1] - edges[0],
            marker_color="steelblue",
            hovertemplate="IoU %{x:.2f}: %{y:,} anchors<extra></extra>",
        )
    )
    if neg_thresh is not None:
        fig.add_vline(x=neg_thresh, line_dash="dash", line_color="darkorange", annotation_text="neg")
    if pos_thresh is not None:
        fig.add_vline(x=pos_thresh, line_dash="dash", line_color="green", annotation_text="pos")
    fig.update_layout(
        title=f"Max IoU of the {len(vals):,} anchors that overlap a GT",
        xaxis_title="max IoU over GTs",
        yaxis_title="anchors",
        yaxis_type="log",
        margin={"t": 50, "b": 40, "l": 60, "r": 20},
        height=340,
        showlegend=False,
    )
    return fig


def assigner_levels_figure(levels: pd.DataFrame) -> go.Figure:
    """Positives per pyramid level under each assigner (grouped bars; the columns of
    :func:`explorer.anchors.compare.per_level_table`)."""
    fig = go.Figure()
    for k, name in enumerate(c for c in levels.columns if c != "level"):
        color = LEVEL_CSS[k % len(LEVEL_CSS)]
        fig.add_bar(x=levels["level"], y=levels[name], name=name, marker_color=color)
    fig.update_layout(
        barmode="group", height=320, template="plotly_white", margin={"l": 40, "r": 20, "t": 50, "b": 40},
        title={"text": "Positives per level under each assigner", "x": 0.0, "font": {"size": 14}},
        yaxis={"title": "positive anchors"}, legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig
