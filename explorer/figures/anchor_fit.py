"""Plotly figures of the anchor fit: before/after bars from the tables of :mod:`explorer.anchors.fit_export`.

"Before" is torchvision's default anchors, "after" the fit's winner; both are scored by the dataset scan (exact to
torchvision). A box counts as covered when it has a positive at IoU >= pos that is not a low-quality rescue.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"size": ["small", "all"], "boxes": [3, 5], "no_positive_before": [1.0, 0.6],
    ...                   "no_positive_after": [0.0, 0.0]})
    >>> [tr.name for tr in no_positive_before_after(t, "size").data]
    ['torchvision default', 'fitted']
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from explorer.figures.dataset import _layout

BEFORE_CSS = "rgb(150,150,150)"
AFTER_CSS = "rgb(0,158,115)"
#: Classes shown in the per-class chart (the table lists all of them).
TOP_CLASSES = 25


def _pair(fig: go.Figure, x: pd.Series, before: pd.Series, after: pd.Series, fmt: str, **kw: object) -> None:
    fig.add_bar(x=x, y=before, name="torchvision default", marker_color=BEFORE_CSS, hovertemplate=fmt, **kw)
    fig.add_bar(x=x, y=after, name="fitted", marker_color=AFTER_CSS, hovertemplate=fmt, **kw)
    fig.update_layout(barmode="group", bargap=0.25)


def no_positive_before_after(table: pd.DataFrame, by: str) -> go.Figure:
    """Share of boxes without a positive at IoU >= pos, before and after, per size bucket (``by="size"``) or per
    class (``by="category"``: the :data:`TOP_CLASSES` classes with the most uncovered boxes before)."""
    t = table
    if by == "category" and len(t) > TOP_CLASSES:
        worst = (t["no_positive_before"] * t["boxes"]).sort_values(ascending=False).index[:TOP_CLASSES]
        t = t.loc[sorted(worst)]
    fig = go.Figure()
    fmt = "%{x}: %{y:.1f} % of its boxes<extra>%{fullData.name}</extra>"
    _pair(fig, t[by].astype(str), 100 * t["no_positive_before"].fillna(0), 100 * t["no_positive_after"].fillna(0), fmt)
    title = "Boxes with no positive at IoU ≥ pos, by " + ("COCO size" if by == "size" else "class")
    if by == "category" and len(table) > len(t):
        title += f" ({len(t)} of {len(table)} classes: most uncovered boxes before)"
    return _layout(fig, title, "", "% of the boxes")


def positives_per_level_before_after(levels: pd.DataFrame) -> go.Figure:
    """Positive anchors per pyramid level, before and after (low-quality matches counted)."""
    fig = go.Figure()
    _pair(fig, levels["level"], levels["positives_before"], levels["positives_after"], "%{x}: %{y:,}<extra></extra>")
    return _layout(fig, "Positive anchors per level", "level", "positive anchors")
