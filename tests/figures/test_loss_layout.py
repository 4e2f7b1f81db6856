"""Tests of explorer.figures.loss_layout: the Loss lab's shared palette, line panels and hanging legend."""

from __future__ import annotations

import math

import pandas as pd

from explorer.figures import loss_layout


def test_line_panels_one_legend_entry_per_line_and_all_nan_columns_left_out() -> None:
    df = pd.DataFrame(
        {
            "x": [0.0, 1.0, 0.0, 1.0],
            "g": ["a", "a", "b", "b"],
            "u": [1.0, 2.0, 3.0, 4.0],
            "v": [1.0, 2.0] + [math.nan] * 2,
        }
    )
    fig = loss_layout.line_panels(df, x="x", group="g", panels=(("u", "U"), ("v", "V")), dashes={"b": "dot"})
    assert [(t.name, t.xaxis) for t in fig.data] == [("a", "x"), ("a", "x2"), ("b", "x")]
    assert [t.showlegend for t in fig.data] == [True, False, True]
    assert fig.data[2].line.dash == "dot"
    fig = loss_layout.layout(fig, "title")
    assert fig.layout.legend.yanchor == "top" and fig.layout.title.text == "title"


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(loss_layout).failed == 0
