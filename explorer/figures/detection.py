"""Plotly figures of the Live detections page. Builders take arrays and tables computed in
:mod:`explorer.detection.outputs` and :mod:`explorer.detection.lossmaps` and return a ``go.Figure``; none runs
the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.labels import COLORS

__all__ = [
    "GROUP_COLORS",
    "level_heatmaps_figure",
    "loss_maps_figure",
    "loss_share_figure",
    "timings_figure",
]

#: One colour per anchor group of the loss maps, in display order (the Loss lab's colours).
GROUP_COLORS = {k: COLORS[k] for k in ("easy negative", "hard negative", "positive", "ignored")}


#: Explicit colour scales (Streamlit's chart theme replaces named ones): dark = low, bright = high.
#: No colour may be one of Streamlit's placeholders "#000001" .. "#000030": its frontend swaps those for theme
#: colours even with ``theme=None`` (inferno's "#000004" became a light purple, so zero read as a high value).
PROB_SCALE: list[list] = [
    [0.0, "#000000"],
    [0.1, "#1b0c41"],
    [0.25, "#4a0c6b"],
    [0.4, "#781c6d"],
    [0.55, "#a52c60"],
    [0.7, "#cf4446"],
    [0.8, "#ed6925"],
    [0.9, "#fb9b06"],
    [1.0, "#fcffa4"],
]
LOSS_SCALE: list[list] = [
    [0.0, "#440154"],
    [0.25, "#3b528b"],
    [0.5, "#21918c"],
    [0.75, "#5ec962"],
    [1.0, "#fde725"],
]


def _layout(fig: go.Figure, title: str, *, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 40, "r": 20, "t": 80, "b": 40},
        template="plotly_white",
    )
    return fig


def _level_names(n: int) -> list[str]:
    return [f"P{3 + i}" for i in range(n)]


def level_heatmaps_figure(
    maps: Sequence[np.ndarray],
    *,
    title: str = "Highest class probability per anchor location, per level",
    value: str = "max p",
) -> go.Figure:
    """One heatmap per pyramid level of a value in [0, 1] over the anchor grid.

    Args:
        maps: per level a (gh, gw) array in [0, 1] (``DenseOutputs.max_prob_maps()``, or an assigner's soft targets).
        title: the figure's title; value: what the colour is (colour bar and hover).
    """
    n = len(maps)
    names = _level_names(n)
    # The grid size goes on a second, smaller line: "P3 · 60×80" side by side ran into its neighbours at 800 px.
    subtitles = [f"{name}<br><sup>{m.shape[0]}×{m.shape[1]}</sup>" for name, m in zip(names, maps, strict=True)]
    fig = make_subplots(rows=1, cols=max(1, n), subplot_titles=subtitles, horizontal_spacing=0.03)
    for i, m in enumerate(maps):
        fig.add_trace(
            go.Heatmap(
                z=m,
                zmin=0.0,
                zmax=1.0,
                colorscale=PROB_SCALE,
                showscale=i == n - 1,
                colorbar={"title": value},
                hovertemplate="row %{y}, col %{x}<br>" + value + " = %{z:.3f}<extra>" + names[i] + "</extra>",
            ),
            row=1,
            col=i + 1,
        )
        fig.update_yaxes(
            autorange="reversed",
            scaleanchor=f"x{i + 1 if i else ''}",
            showticklabels=False,
            showgrid=False,
            zeroline=False,
            row=1,
            col=i + 1,
        )
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=i + 1)
    return _layout(fig, title, height=330)


def loss_maps_figure(
    level_maps: Sequence[dict[str, np.ndarray]], groups: Sequence[str], *, loss_name: str
) -> go.Figure:
    """A grid of heatmaps: one row per anchor group, one column per level, of the loss summed per grid cell,
    coloured by log10(loss) so that small losses stay visible.

    Args:
        level_maps: ``lossmaps.level_loss_maps`` output (per level, group -> (gh, gw) map).
        groups: the group rows to show, in order.
        loss_name: shown in the title ("Focal (α=0.25, γ=2)").
    """
    n = len(level_maps)
    rows = max(1, len(groups))
    names = _level_names(n)
    # Levels name the columns (first row only) and groups the rows (y titles of the first column): one title per
    # panel ("easy negative · P3") was wider than the panel and ran into its neighbours.
    titles = names + [""] * (n * (rows - 1))
    fig = make_subplots(
        rows=rows, cols=max(1, n), subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08
    )
    everything = np.concatenate([m[g].ravel() for m in level_maps for g in groups]) if groups else np.zeros(1)
    positive = everything[everything > 0]
    hi = float(positive.max()) if positive.size else 1.0
    lo = max(float(np.percentile(positive, 1)) if positive.size else 1e-6, hi * 1e-6)
    for r, group in enumerate(groups):
        for c, maps in enumerate(level_maps):
            z = maps[group]
            shown = np.where(z > 0, np.log10(np.maximum(z, lo)), np.nan)
            fig.add_trace(
                go.Heatmap(
                    z=shown,
                    customdata=z,
                    zmin=np.log10(lo),
                    zmax=np.log10(hi),
                    colorscale=LOSS_SCALE,
                    showscale=r == 0 and c == n - 1,
                    colorbar={"title": "log10 loss"},
                    hovertemplate="row %{y}, col %{x}<br>loss = %{customdata:.4g}<extra>" + group + "</extra>",
                ),
                row=r + 1,
                col=c + 1,
            )
            fig.update_yaxes(
                autorange="reversed",
                showticklabels=False,
                showgrid=False,
                zeroline=False,
                title_text=group if c == 0 else None,
                row=r + 1,
                col=c + 1,
            )
            fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=r + 1, col=c + 1)
    return _layout(
        fig,
        f"{loss_name} loss per anchor location (blank: no anchor)",
        height=200 + 190 * rows,
    )


def loss_share_figure(shares: pd.DataFrame, kinds: Sequence[str]) -> go.Figure:
    """Stacked bars: the share of the image's loss from each anchor group, one bar per loss.

    Args:
        shares: ``LossBreakdown.shares()`` (columns ``group``, ``anchors``, ``<kind> share``).
        kinds: loss display names to show ("CE", "Focal", "QFL").
    """
    fig = go.Figure()
    counted = shares[shares["group"] != "ignored"]
    for _, row in counted.iterrows():
        fig.add_trace(
            go.Bar(
                name=f"{row['group']} ({int(row['anchors']):,} anchors)",
                x=list(kinds),
                y=[row[f"{k} share"] for k in kinds],
                marker_color=GROUP_COLORS.get(row["group"], "#7f7f7f"),
                hovertemplate="%{x}: %{y:.1%}<extra>" + row["group"] + "</extra>",
                text=[f"{row[f'{k} share']:.1%}" for k in kinds],
                textposition="inside",
            )
        )
    fig.update_layout(barmode="stack", yaxis={"tickformat": ".0%", "range": [0, 1], "title": "share of loss"})
    fig = _layout(fig, "Share of the image's classification loss per anchor group", height=460)
    # The legend hangs below the bar labels (CE, Focal, QFL) from its top edge, with room for three rows: anchored
    # by its bottom it grew upwards over them.
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0.0}, margin={"b": 110})
    return fig


def timings_figure(timings_ms: dict[str, float], *, device: str) -> go.Figure:
    """Horizontal bars of the stage timings in milliseconds (``total`` left out of the bars, shown in the title)."""
    stages = [k for k in timings_ms if k != "total"]
    fig = go.Figure(
        go.Bar(
            x=[timings_ms[k] for k in stages],
            y=stages,
            orientation="h",
            text=[f"{timings_ms[k]:.1f} ms" for k in stages],
            textposition="auto",
            marker_color="#4c78a8",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="ms")
    total = timings_ms.get("total", sum(timings_ms[k] for k in stages))
    return _layout(fig, f"Timings: {total:.1f} ms in total<br><sup>{device}</sup>", height=270)
