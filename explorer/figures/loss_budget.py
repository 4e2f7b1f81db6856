"""Plotly figures of the Loss lab's "Where the loss goes" tab: the simulated batch's loss and gradient budget per
anchor group, the cumulative normalized loss (the focal-loss paper's Figure 4) and the predicted-probability
histogram. Each builder takes a table from :mod:`explorer.losses.budget` and returns a ``go.Figure``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.loss_layout import layout, line_colors
from explorer.labels import COLORS
from explorer.losses.budget import GROUPS, LOSSES

__all__ = ["GROUP_COLORS", "budget_figure", "loss_cdf_figure", "probability_figure"]

#: One colour per anchor group, used by every budget figure.
GROUP_COLORS = COLORS


def budget_figure(table: pd.DataFrame) -> go.Figure:
    """Stacked bars: share of the total loss and of the total gradient magnitude per group, per loss."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("share of total loss", "share of total |dL/dx|"), horizontal_spacing=0.08
    )
    losses = [name for name in LOSSES if name in set(table["loss"])]
    for group in GROUPS:
        d = table[table["group"] == group].set_index("loss").reindex(losses)
        for col, column in ((1, "loss_share"), (2, "grad_share")):
            fig.add_trace(
                go.Bar(
                    x=losses,
                    y=d[column],
                    name=group,
                    legendgroup=group,
                    showlegend=col == 1,
                    marker_color=GROUP_COLORS[group],
                    text=[f"{v:.1%}" for v in d[column]],
                    textposition="inside",
                    customdata=d["count"],
                    hovertemplate=f"{group}: " + "%{y:.2%} (%{customdata:,} anchors)<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(barmode="stack", uniformtext={"minsize": 9, "mode": "hide"})
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    fig = layout(fig, "Where the loss goes: share per anchor group")
    fig.update_layout(hovermode="closest")
    return fig


def loss_cdf_figure(df: pd.DataFrame) -> go.Figure:
    """The focal-loss paper's Figure 4: cumulative normalized loss of positives and of negatives, per gamma."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("positives", "negatives"), horizontal_spacing=0.08)
    gammas = sorted(df["gamma"].unique())
    colors = line_colors([f"{g:g}" for g in gammas])
    in_legend: set[str] = set()  # one entry per γ, from whichever panel has it (a batch may have no positives)
    for col, group in ((1, "positive"), (2, "negative")):
        for g in gammas:
            d = df[(df["group"] == group) & (df["gamma"] == g)]
            if d.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=d["fraction"],
                    y=d["cumulative_loss"],
                    name=f"γ = {g:g}",
                    legendgroup=f"{g:g}",
                    showlegend=f"{g:g}" not in in_legend,
                    line={"color": colors[f"{g:g}"]},
                    hovertemplate="%{x:.4f} of anchors → %{y:.3f} of loss",
                ),
                row=1,
                col=col,
            )
            in_legend.add(f"{g:g}")
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                line={"color": "#bbb", "dash": "dot"},
                showlegend=False,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="fraction of anchors (sorted by loss)", range=[0, 1])
    fig.update_yaxes(title_text="cumulative normalized loss", range=[0, 1], row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig = layout(fig, "Cumulative distribution of normalized focal loss (paper Figure 4)")
    fig.update_layout(hovermode="closest")
    return fig


def probability_figure(hist: pd.DataFrame) -> go.Figure:
    """Distribution of the predicted foreground probability in each simulated group (log y)."""
    fig = go.Figure()
    for group in GROUPS:
        d = hist[hist["group"] == group]
        centers = (d["bin_left"] + d["bin_right"]) / 2
        fig.add_trace(
            go.Scatter(
                x=centers,
                y=d["count"].where(d["count"] > 0),
                name=group,
                mode="lines+markers",
                line={"color": GROUP_COLORS[group], "shape": "hvh"},
                hovertemplate="p ≈ %{x:.2f}: %{y:,} anchors",
            )
        )
    fig.update_xaxes(title_text="predicted foreground probability p", range=[0, 1])
    fig.update_yaxes(title_text="anchors per bin", type="log", exponentformat="power")
    fig = layout(fig, "The simulated batch: predicted probability per group", height=380)
    fig.update_layout(legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom"})
    return fig
