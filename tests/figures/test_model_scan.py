"""The Model scan's figures show the numbers of the tables they are built from."""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.figures import model_scan as figs


def test_loss_shares_figure_stacks_each_groups_share():
    ce = pd.DataFrame({"group": ["positive", "hard negative", "easy negative"], "loss": [1, 2, 7],
                       "share": [0.1, 0.2, 0.7]})  # fmt: skip
    focal = ce.assign(share=[0.8, 0.15, 0.05])
    fig = figs.loss_shares_figure(ce, focal, alpha=0.25, gamma=2)
    assert [t.name for t in fig.data] == ["positive", "hard negative", "easy negative"]
    assert [list(t.x) for t in fig.data] == [[0.1, 0.8], [0.2, 0.15], [0.7, 0.05]]
    assert fig.data[0].y[1] == "focal (α 0.25, γ 2)"


def test_score_iou_figure_is_the_log_density_with_the_diagonal():
    density = np.zeros((20, 20))
    density[19, 18] = 99
    fig = figs.score_iou_figure(density)
    assert np.asarray(fig.data[0].z)[19, 18] == 2.0 and np.asarray(fig.data[0].z).sum() == 2.0
    assert fig.layout.shapes[0].x1 == 1 and fig.layout.shapes[0].y1 == 1


def test_assigners_and_level_figures_plot_the_table_columns():
    table = pd.DataFrame({"assigner": ["max-IoU", "ATSS"], "share with no positive": [0.1, 0.0],
                          "positives per box": [6.0, 8.5]})  # fmt: skip
    fig = figs.assigners_figure(table)
    assert list(fig.data[0].y) == [0.1, 0.0] and list(fig.data[1].y) == [6.0, 8.5]
    levels = pd.DataFrame({"level": ["P3", "P4"], "focal share": [0.7, 0.3], "CE share": [0.5, 0.5]})
    fig = figs.level_figure(levels)
    assert list(fig.data[0].y) == [0.7, 0.3] and list(fig.data[1].y) == [0.5, 0.5]
