"""The Loss lab's shared figure layout: one line palette, side-by-side line panels, and a legend that hangs below
the plot area and grows downwards when it wraps (so it never climbs over the x-axis titles).

Used by :mod:`explorer.figures.losses` and :mod:`explorer.figures.loss_budget`.

Example:
    >>> line_colors(["CE", "focal"])
    {'CE': '#636EFA', 'focal': '#EF553B'}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

__all__ = ["PALETTE", "layout", "line_colors", "line_panels"]

#: Line colours, in order; cycled when there are more lines.
PALETTE = qualitative.Plotly + qualitative.D3


def line_colors(labels: Sequence[str]) -> dict[str, str]:
    """One colour of :data:`PALETTE` per label, in order."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


#: Pixels between the bottom of the plot area and the top of the legend (tick labels and the axis title fit).
_LEGEND_GAP_PX = 60
#: Pixels per legend row, and the legend width (px) assumed when estimating how many rows it wraps into.
_LEGEND_ROW_PX = 24
_LEGEND_WIDTH_PX = 560


def _legend_rows(fig: go.Figure) -> int:
    """Rough number of rows the horizontal legend wraps into (about 6.5 px per character plus the symbol)."""
    names = [t.name or "" for t in fig.data if t.showlegend is not False and t.name]
    width = sum(6.5 * len(n) + 45 for n in names)
    return max(1, math.ceil(width / _LEGEND_WIDTH_PX))


def layout(fig: go.Figure, title: str, *, height: int = 420) -> go.Figure:
    """Common layout: the legend hangs below the plot area from its top edge, so a legend that wraps into more
    rows grows downwards (the figure grows with it) instead of climbing over the x-axis titles."""
    extra = _LEGEND_ROW_PX * (_legend_rows(fig) - 1)
    top, bottom = 70, 90 + extra
    plot_h = height - top - 90
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height + extra,
        margin={"l": 60, "r": 20, "t": top, "b": bottom},
        legend={"orientation": "h", "yanchor": "top", "y": -_LEGEND_GAP_PX / plot_h, "x": 0.0},
        hovermode="x unified",
        template="plotly_white",
    )
    return fig


def line_panels(
    df: pd.DataFrame,
    *,
    x: str,
    group: str,
    panels: Sequence[tuple[str, str]],
    dashes: dict[str, str] | None = None,
    spacing: float = 0.08,
) -> go.Figure:
    """Side-by-side panels, one per ``(column, title)`` of ``panels``, with one line per ``group`` value against
    column ``x`` (one shared legend entry per line). ``dashes`` maps a line's label to its dash (default solid); a
    line whose column is all NaN is left out of that panel."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels], horizontal_spacing=spacing)
    fig.update_annotations(font_size=13)  # panel titles: at 800 px the default 16 px ran into each other
    labels = list(dict.fromkeys(df[group]))
    colors = line_colors(labels)
    for label in labels:
        d = df[df[group] == label]
        for col, (column, _) in enumerate(panels, start=1):
            if d[column].isna().all():
                continue
            fig.add_trace(
                go.Scatter(
                    x=d[x],
                    y=d[column],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line={"color": colors[label], "width": 2, "dash": (dashes or {}).get(label, "solid")},
                    hovertemplate="%{y:.4g}",
                ),
                row=1,
                col=col,
            )
    return fig
