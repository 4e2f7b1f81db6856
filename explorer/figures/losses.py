"""Plotly figures of the Loss lab's "Classification", "Soft targets" and "Box losses" tabs. Each builder takes a
table from :mod:`explorer.losses.curves` or :mod:`explorer.losses.box_curves` and returns a ``go.Figure``; none
computes a loss itself. The "Where the loss goes" figures are in :mod:`explorer.figures.loss_budget`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.loss_layout import layout, line_panels
from explorer.losses.curves import SoftTargetGrid

__all__ = [
    "box_loss_figure",
    "box_pair_figure",
    "classification_figure",
    "dfl_figure",
    "smooth_l1_figure",
    "soft_cut_figure",
    "soft_heatmap_figure",
]

_SHADE = "rgba(44, 160, 44, 0.10)"


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ---------------------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------------------


def classification_figure(
    df: pd.DataFrame,
    *,
    axis: str = "p_t",
    log_y: bool = False,
    well_classified: float | None = 0.6,
    target: int = 1,
    readout_pt: float | None = None,
) -> go.Figure:
    """Loss, gradient dL/dx and modulating factor (loss / CE) of every curve, side by side (paper Figure 1).

    Args:
        df: :func:`explorer.losses.curves.classification_curves` output.
        axis: "p_t" or "logit", as the table was built.
        log_y: log-scale y axes (the gradient is then shown as |dL/dx|).
        well_classified: shade p_t above this value ("well-classified examples"); None for no shading.
        target: the example's class, to place the shaded region on the logit axis.
        readout_pt: draw a dotted vertical line at this p_t.
    """
    grad_title = "|dL/dx| (gradient size)" if log_y else "dL/dx (gradient)"
    fig = line_panels(
        df.assign(grad=df["grad"].abs()) if log_y else df,
        x="x",
        group="curve",
        panels=(("loss", "loss"), ("grad", grad_title), ("factor", "loss / CE (modulation)")),
        dashes={"CE": "dash"},
        spacing=0.07,
    )

    def to_x(p_t: float) -> float:
        if axis == "p_t":
            return p_t
        return _logit(p_t) if target == 1 else -_logit(p_t)

    if well_classified is not None and 0 < well_classified < 1:
        x_thr = to_x(well_classified)
        x_lo, x_hi = float(df["x"].min()), float(df["x"].max())
        x0, x1 = (x_thr, x_hi) if (axis == "p_t" or target == 1) else (x_lo, x_thr)
        for col in (1, 2, 3):
            fig.add_vrect(x0=x0, x1=x1, fillcolor=_SHADE, line_width=0, row=1, col=col)
        fig.add_annotation(
            x=(x0 + x1) / 2, y=1.0, yref="y domain", text="well-classified", showarrow=False, font={"size": 11}
        )
    if readout_pt is not None and 0 < readout_pt < 1:
        for col in (1, 2, 3):
            fig.add_vline(x=to_x(readout_pt), line_dash="dot", line_color="#555", row=1, col=col)
    # One x title under the middle panel: repeated under each of three panels, the titles ran into each other.
    x_title = "p_t (probability of the true class)" if axis == "p_t" else "logit x"
    fig.update_xaxes(title_text=x_title, row=1, col=2)
    if log_y:
        # Six decades below each panel's largest value: enough to see focal loss fall away from CE, without the
        # axis running down to 1e-20 where p_t -> 1 (the curves are accurate there, but nothing can be read).
        for col, values in ((1, df["loss"]), (2, df["grad"].abs()), (3, df["factor"])):
            top = float(values[values > 0].max()) if (values > 0).any() else 1.0
            fig.update_yaxes(
                type="log", exponentformat="power", range=[math.log10(top) - 6, math.log10(top) + 0.2], row=1, col=col
            )
    else:
        fig.update_yaxes(range=[0, 5], row=1, col=1)
    return layout(fig, "Classification losses: value, gradient and modulating factor", height=460)


# ---------------------------------------------------------------------------------------------------------------
# Soft targets
# ---------------------------------------------------------------------------------------------------------------


def soft_heatmap_figure(grid: SoftTargetGrid, *, quantity: str = "loss", cut_target: float | None = None) -> go.Figure:
    """QFL and VFL as heatmaps over (prediction, target IoU); ``quantity`` is "loss" or "grad" (dL/dx)."""
    if quantity not in ("loss", "grad"):
        raise ValueError(f"quantity={quantity!r} is invalid: use 'loss' or 'grad'")
    names = ("Quality Focal Loss", "Varifocal loss")
    fig = make_subplots(rows=1, cols=2, subplot_titles=names, horizontal_spacing=0.2)
    zs = (grid.qfl, grid.vfl) if quantity == "loss" else (grid.qfl_grad, grid.vfl_grad)
    for col, (name, z) in enumerate(zip(names, zs, strict=True), start=1):
        common = {
            "x": grid.pred,
            "y": grid.target,
            "z": z,
            "name": name,
            "colorbar": {"x": 0.41 if col == 1 else 1.01, "len": 0.9, "thickness": 14, "title": {"text": quantity}},
            "hovertemplate": "pred %{x:.3f}<br>target %{y:.3f}<br>" + quantity + " %{z:.4g}<extra></extra>",
        }
        # The colour range stops at the 98th percentile of |z|: the few extreme corners (confident and wrong)
        # would otherwise flatten everything else into one colour. Hover shows the exact values.
        lim = float(np.quantile(np.abs(z), 0.98)) or float(np.abs(z).max()) or 1.0
        if quantity == "loss":
            fig.add_trace(go.Heatmap(colorscale="Viridis", zmin=0, zmax=lim, **common), row=1, col=col)
        else:
            fig.add_trace(go.Heatmap(colorscale="RdBu_r", zmid=0, zmin=-lim, zmax=lim, **common), row=1, col=col)
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": "white", "dash": "dot"}, name="pred = target"),
            row=1,
            col=col,
        )
        if cut_target is not None:
            fig.add_hline(y=cut_target, line_color="red", line_dash="dash", row=1, col=col)
    fig.update_traces(showlegend=False, selector={"type": "scatter"})
    fig.update_xaxes(title_text="prediction σ(x)", range=[0, 1])
    fig.update_yaxes(title_text="target IoU", range=[0, 1], row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    title = "Soft-target losses" + (" (loss)" if quantity == "loss" else " (gradient dL/dx)")
    fig = layout(fig, title, height=440)
    fig.update_layout(hovermode="closest")
    return fig


def soft_cut_figure(df: pd.DataFrame, *, target: float) -> go.Figure:
    """Line cut of the soft-target losses at one target: loss and dL/dx against the prediction."""
    fig = line_panels(
        df, x="pred", group="loss_name", panels=(("loss", "loss"), ("grad", "dL/dx")), dashes={"BCE": "dot"}
    )
    for col in (1, 2):
        fig.add_vline(x=target, line_dash="dash", line_color="red", row=1, col=col)
    fig.update_xaxes(title_text="prediction σ(x)")
    return layout(fig, f"Line cut at target IoU = {target:g}")


def dfl_figure(bins: pd.DataFrame, curve: pd.DataFrame, *, target: float) -> go.Figure:
    """DFL: the target's two-bin distribution against the predicted one, and the loss as the prediction moves."""
    loss = float(bins["loss"].iloc[0])
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"bins: DFL = {loss:.4f}", "DFL as the predicted centre moves"),
        horizontal_spacing=0.08,
    )
    fig.add_trace(
        go.Bar(x=bins["bin"], y=bins["target_weight"], name="target distribution w", marker_color="#d62728"),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(x=bins["bin"], y=bins["pred_prob"], name="predicted softmax S", marker_color="#1f77b4", opacity=0.7),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=curve["pred_mean"], y=curve["loss"], name="DFL", line={"color": "#1f77b4"}),
        row=1,
        col=2,
    )
    fig.add_hline(
        y=float(bins["min_loss"].iloc[0]),
        line_dash="dot",
        line_color="#555",
        annotation_text="minimum (S = w)",
        row=1,
        col=2,
    )
    for col in (1, 2):
        fig.add_vline(x=target, line_dash="dash", line_color="red", row=1, col=col)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="bin (distance in bin units)", row=1, col=1)
    fig.update_xaxes(title_text="centre of the predicted distribution", row=1, col=2)
    fig.update_yaxes(title_text="probability", row=1, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=2)
    return layout(fig, f"Distribution Focal Loss for target y = {target:g}")


# ---------------------------------------------------------------------------------------------------------------
# Box losses
# ---------------------------------------------------------------------------------------------------------------


def box_loss_figure(df: pd.DataFrame, *, grad_kind: str = "box", log_y: bool = False) -> go.Figure:
    """IoU-family losses and gradient magnitudes against IoU.

    Args:
        df: :func:`explorer.losses.box_curves.box_loss_curves` output.
        grad_kind: "box" (|dL/d(box)| along the path, every loss) or "iou" (|dL/dIoU|, IoU-only losses).
        log_y: log-scale y axes.
    """
    if grad_kind not in ("box", "iou"):
        raise ValueError(f"grad_kind={grad_kind!r} is invalid: use 'box' or 'iou'")
    grad_col = "grad_box" if grad_kind == "box" else "grad_iou"
    grad_title = "‖dL/d(x1, y1, x2, y2)‖ of the prediction" if grad_kind == "box" else "|dL/dIoU|"
    fig = line_panels(
        df, x="iou", group="loss_name", panels=(("loss", "loss"), (grad_col, grad_title)), dashes={"RIoU": "dash"}
    )
    fig.update_xaxes(title_text="IoU of the predicted box with the ground truth", range=[0, 1])
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    else:
        fig.update_yaxes(range=[0, 2.5], row=1, col=1)
        fig.update_yaxes(range=[0, 4.0], row=1, col=2)
    return layout(fig, "Box losses against IoU")


def smooth_l1_figure(df: pd.DataFrame) -> go.Figure:
    """Smooth L1 / L1 loss and gradient against the regression offset."""
    fig = line_panels(df, x="offset", group="curve", panels=(("loss", "loss"), ("grad", "dL/dd")))
    fig.update_xaxes(title_text="offset d = prediction − target (encoded delta)")
    return layout(fig, "Smooth L1 against the offset")


def box_pair_figure(pred_xyxy: Sequence[float], gt_xyxy: Sequence[float]) -> go.Figure:
    """The two boxes of the sandbox, their enclosing box C, the centre distance ρ and C's diagonal c."""
    px1, py1, px2, py2 = (float(v) for v in pred_xyxy)
    gx1, gy1, gx2, gy2 = (float(v) for v in gt_xyxy)
    cx1, cy1, cx2, cy2 = min(px1, gx1), min(py1, gy1), max(px2, gx2), max(py2, gy2)
    fig = go.Figure()

    def rect(x1: float, y1: float, x2: float, y2: float, name: str, color: str, dash: str, fill: str) -> None:
        fig.add_trace(
            go.Scatter(
                x=[x1, x2, x2, x1, x1],
                y=[y1, y1, y2, y2, y1],
                mode="lines",
                name=name,
                line={"color": color, "dash": dash, "width": 2},
                fill="toself" if fill else None,
                fillcolor=fill or None,
                hoverinfo="name",
            )
        )

    rect(cx1, cy1, cx2, cy2, "enclosing box C", "#888", "dot", "")
    rect(gx1, gy1, gx2, gy2, "ground truth", "#2ca02c", "solid", "rgba(44,160,44,0.15)")
    rect(px1, py1, px2, py2, "prediction", "#ff7f0e", "solid", "rgba(255,127,14,0.15)")
    fig.add_trace(
        go.Scatter(
            x=[(px1 + px2) / 2, (gx1 + gx2) / 2],
            y=[(py1 + py2) / 2, (gy1 + gy2) / 2],
            mode="lines+markers",
            name="centre distance ρ",
            line={"color": "#d62728"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[cx1, cx2], y=[cy1, cy2], mode="lines", name="diagonal c of C", line={"color": "#888", "dash": "dash"}
        )
    )
    pad = 0.05 * max(cx2 - cx1, cy2 - cy1, 1e-9)
    fig.update_xaxes(range=[cx1 - pad, cx2 + pad], title_text="x (px)", constrain="domain")
    fig.update_yaxes(
        range=[cy2 + pad, cy1 - pad], title_text="y (px, down)", scaleanchor="x", scaleratio=1, constrain="domain"
    )
    fig = layout(fig, "Two-box sandbox", height=420)
    fig.update_layout(hovermode="closest")
    return fig
