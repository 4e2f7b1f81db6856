"""Plotly figures of the Model scan page, built from the tables of :mod:`explorer.model_scan.summary`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.detection import LOSS_SCALE
from explorer.labels import COLORS


def _layout(fig: go.Figure, title: str, *, height: int = 340) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 14}},
        height=height,
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def loss_shares_figure(ce: pd.DataFrame, focal: pd.DataFrame, *, alpha: float, gamma: float) -> go.Figure:
    """Stacked 100 % bars: each group's share of the dataset's CE loss and of its focal loss at (alpha, gamma)."""
    fig = go.Figure()
    labels = ["CE", f"focal (α {alpha:g}, γ {gamma:g})"]
    for group in ce["group"]:
        shares = [float(t.loc[t["group"] == group, "share"].iloc[0]) for t in (ce, focal)]
        fig.add_bar(
            y=labels, x=shares, name=group, orientation="h", marker_color=COLORS[group],
            text=[f"{s:.1%}" for s in shares], textposition="inside",
        )  # fmt: skip
    fig.update_layout(barmode="stack", xaxis={"tickformat": ".0%", "range": [0, 1]})
    return _layout(fig, "Share of the classification loss by anchor group", height=260)


def pt_figure(table: pd.DataFrame, pt_column: str) -> go.Figure:
    """Per IoU group, anchors easy and hard by the classifier's p_t (log scale)."""
    fig = go.Figure()
    for kind, color in (("easy", "#4c9be8"), ("hard", "#e8604c")):
        rows = table[table[pt_column] == kind]
        fig.add_bar(x=rows["group (by IoU)"], y=rows["anchors"], name=f"{kind} by p_t", marker_color=color)
    fig.update_layout(barmode="group", yaxis={"type": "log", "title": "anchors"})
    return _layout(fig, "Easy / hard by the classifier (p_t) within each IoU group")


def loss_histogram(images: pd.DataFrame, column: str, *, nbins: int = 40) -> go.Figure:
    """Histogram of a per-image loss column."""
    fig = go.Figure(go.Histogram(x=images[column], nbinsx=nbins, marker_color="#7f7f7f"))
    fig.update_layout(xaxis={"title": column.replace("_", " ")}, yaxis={"title": "images"}, bargap=0.05)
    return _layout(fig, f"Per-image {column.replace('_', ' ')}")


def score_iou_figure(density: np.ndarray) -> go.Figure:
    """Positives' class score (rows) against the IoU of their decoded box (columns): counts, log colour."""
    n = density.shape[0]
    centres = (np.arange(n) + 0.5) / n
    z = np.log10(density + 1)
    fig = go.Figure(
        go.Heatmap(
            x=centres, y=centres, z=z, colorscale=LOSS_SCALE, colorbar={"title": "log10(1 + n)"},
            hovertemplate="IoU %{x:.2f}, score %{y:.2f}: log10(1 + n) %{z:.2f}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"color": "white", "dash": "dot"})
    fig.update_layout(xaxis={"title": "IoU of the decoded box", "range": [0, 1]},
                      yaxis={"title": "score of the box's class", "range": [0, 1]})  # fmt: skip
    return _layout(fig, "Score against IoU of the positive anchors", height=380)


def level_figure(levels: pd.DataFrame) -> go.Figure:
    """Per FPN level, its share of the focal and the CE loss."""
    fig = go.Figure()
    for kind, color in (("focal", "#4c9be8"), ("CE", "#7f7f7f")):
        fig.add_bar(x=levels["level"], y=levels[f"{kind} share"], name=kind, marker_color=color)
    fig.update_layout(barmode="group", yaxis={"tickformat": ".0%", "title": "share of the loss"})
    return _layout(fig, "Loss by pyramid level")


def assigners_figure(table: pd.DataFrame) -> go.Figure:
    """Per assigner compared over the dataset: the share of boxes with no positive and positives per box."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("boxes with no positive", "positives per box"))
    fig.add_bar(x=table["assigner"], y=table["share with no positive"], marker_color="#e8604c", row=1, col=1,
                showlegend=False)  # fmt: skip
    fig.add_bar(x=table["assigner"], y=table["positives per box"], marker_color="#4c9be8", row=1, col=2,
                showlegend=False)  # fmt: skip
    fig.update_yaxes(tickformat=".1%", rangemode="nonnegative", row=1, col=1)
    fig.update_yaxes(rangemode="nonnegative", row=1, col=2)
    return _layout(fig, "Assigners over the scanned images")
