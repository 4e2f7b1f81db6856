"""Tests of explorer.figures.loss_budget: the "Where the loss goes" figures show every group and every γ."""

from __future__ import annotations

from explorer.figures import loss_budget as FL
from explorer.losses import budget as B


def test_budget_figures() -> None:
    spec = B.BatchSpec(n_anchors=5_000)
    fig = FL.budget_figure(B.loss_budget(spec))
    assert len(fig.data) == 6 and fig.layout.barmode == "stack"
    fig = FL.loss_cdf_figure(B.normalized_loss_cdf(spec, gammas=(0.0, 2.0), n_points=11))
    assert len([t for t in fig.data if t.showlegend is not False]) == 2
    fig = FL.probability_figure(B.probability_histogram(spec, bins=10))
    assert len(fig.data) == 3


def test_cdf_legend_survives_a_batch_without_positives() -> None:
    """Regression: the γ legend came from the positives' panel only, so it vanished when the batch had none."""
    spec = B.BatchSpec(n_anchors=2_000, positive=B.GroupSpec(0.0, 6.0, 3.0))
    fig = FL.loss_cdf_figure(B.normalized_loss_cdf(spec, gammas=(0.0, 2.0), n_points=11))
    assert sorted(t.name for t in fig.data if t.showlegend is not False and t.name) == ["γ = 0", "γ = 2"]
