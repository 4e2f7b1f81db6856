"""The Anchor lab's figures show the numbers of the tables they are built from."""

from __future__ import annotations

import pandas as pd

from explorer.figures.anchors import assigner_levels_figure


def test_assigner_levels_figure_has_one_bar_series_per_assigner():
    levels = pd.DataFrame({"level": ["P3", "P4"], "max-IoU": [10, 4], "ATSS": [12, 6]})
    fig = assigner_levels_figure(levels)
    assert [t.name for t in fig.data] == ["max-IoU", "ATSS"] and list(fig.data[1].y) == [12, 6]
