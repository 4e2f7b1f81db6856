"""Tests of explorer.figures.losses: every builder returns a figure with the expected traces."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from explorer.figures import losses as FL
from explorer.losses import box_curves as BC
from explorer.losses import curves as C


@pytest.mark.parametrize(("axis", "target", "log_y"), [("p_t", 1, False), ("logit", 0, True)])
def test_classification_figure(axis: str, target: int, log_y: bool) -> None:
    df = C.classification_curves(["CE", "focal"], gammas=(0.0, 2.0), axis=axis, target=target, n=50)
    fig = FL.classification_figure(df, axis=axis, log_y=log_y, target=target, readout_pt=0.9)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 3 * 3  # three curves on three panels
    assert sum(t.showlegend is not False for t in fig.data) == 3
    assert len([s for s in fig.layout.shapes if s.type == "rect"]) == 3  # shaded well-classified region
    if log_y:
        assert fig.layout.yaxis.type == "log" and min(min(t.y) for t in fig.data if t.xaxis == "x2") >= 0
        # Readable log axes: six decades below the panel's largest value, not down to 1e-20.
        lo, hi = fig.layout.yaxis.range
        assert hi - lo == pytest.approx(6.2)
        assert 10**hi >= df["loss"].max()


def test_soft_figures() -> None:
    grid = C.soft_target_grid(n_pred=11, n_target=6)
    for q in ("loss", "grad"):
        fig = FL.soft_heatmap_figure(grid, quantity=q, cut_target=0.5)
        assert [t.type for t in fig.data].count("heatmap") == 2
    with pytest.raises(ValueError, match="quantity"):
        FL.soft_heatmap_figure(grid, quantity="x")
    fig = FL.soft_cut_figure(C.soft_target_cut(0.5, n=20), target=0.5)
    assert len(fig.data) == 6
    fig = FL.dfl_figure(C.dfl_bins(3.4, n_bins=8), C.dfl_loss_vs_mean(3.4, n_bins=8, n=20), target=3.4)
    assert [t.type for t in fig.data] == ["bar", "bar", "scatter"]


def test_box_figures() -> None:
    df = BC.box_loss_curves("shift", n=30)
    fig = FL.box_loss_figure(df, grad_kind="box")
    assert len(fig.data) == 12
    fig = FL.box_loss_figure(df, grad_kind="iou", log_y=True)
    assert len(fig.data) == 6 + 3  # only 1 - IoU, -ln IoU and RIoU have dL/dIoU
    fig = FL.smooth_l1_figure(BC.smooth_l1_curves(n=20))
    assert len(fig.data) == 6
    fig = FL.box_pair_figure([0, 0, 4, 2], [1, 0, 3, 4])
    assert len(fig.data) == 5 and fig.layout.yaxis.scaleanchor == "x"


def test_legend_hangs_below_the_axis_titles_and_grows_downwards() -> None:
    """Regression: a legend that wrapped into two rows was anchored at its bottom and climbed over the x titles."""
    few = C.classification_curves(["CE", "focal"], gammas=(2.0,), n=20)
    many = C.classification_curves(["CE", "focal", "α-CE", "FL*"], gammas=(0.0, 0.5, 1.0, 2.0, 3.0, 5.0), n=20)
    fig_few = FL.classification_figure(few)
    fig_many = FL.classification_figure(many)
    for fig in (fig_few, fig_many):
        assert fig.layout.legend.yanchor == "top" and fig.layout.legend.y < -0.15
    # The plot area keeps its height: the figure and its bottom margin grow by the same extra legend rows.
    assert fig_many.layout.height > fig_few.layout.height
    assert fig_many.layout.height - fig_many.layout.margin.b == fig_few.layout.height - fig_few.layout.margin.b


def test_classification_panels_share_one_x_title_and_short_panel_titles() -> None:
    """Regression (1280 px): three 'p_t (probability of the true class)' titles and long panel titles ran into
    each other; the x title is written once, under the middle panel."""
    fig = FL.classification_figure(C.classification_curves(["CE", "focal"], gammas=(2.0,), n=20))
    titles = [fig.layout[f"xaxis{i}"].title.text for i in ("", "2", "3")]
    assert titles == [None, "p_t (probability of the true class)", None]
    panel_titles = [a.text for a in fig.layout.annotations if a.text != "well-classified"]
    assert panel_titles == ["loss", "dL/dx (gradient)", "loss / CE (modulation)"]
