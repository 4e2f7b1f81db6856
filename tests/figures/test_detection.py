"""Figures of the Live detections page: colour scales survive Streamlit's frontend, heatmaps read low = dark."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from streamlit.elements.lib import streamlit_plotly_theme as st_theme

from explorer.figures import detection as figs

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _placeholders() -> set[str]:
    """Streamlit's frontend replaces these colours with theme colours, whatever ``theme=`` says."""
    return {v.lower() for k, v in vars(st_theme).items() if k.isupper() and isinstance(v, str) and _HEX.match(v)}


def _colours(obj) -> set[str]:
    if isinstance(obj, str):
        return {obj.lower()} if _HEX.match(obj) else set()
    if isinstance(obj, dict):
        return set().union(*(_colours(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list | tuple):
        return set().union(*(_colours(v) for v in obj)) if obj else set()
    return set()


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_placeholder_set_is_streamlits():
    assert "#000004" in _placeholders()  # the colour that painted zero light purple


def test_no_figure_uses_a_streamlit_placeholder_colour():
    maps = [np.linspace(0, 1, 12).reshape(3, 4), np.zeros((2, 2))]
    level_maps = [{"positive": np.ones((3, 4)), "easy negative": np.zeros((3, 4))}]
    shares = pd.DataFrame(
        {"group": ["easy negative", "positive", "ignored"], "anchors": [10, 2, 1], "CE share": [0.8, 0.2, None]}
    )
    built = [
        figs.level_heatmaps_figure(maps),
        figs.loss_maps_figure(level_maps, ["positive", "easy negative"], loss_name="Focal"),
        figs.loss_share_figure(shares, ["CE"]),
        figs.timings_figure({"head": 1.0, "total": 1.0}, device="CPU"),
    ]
    used = set().union(*(_colours(f.to_plotly_json()) for f in built))
    used |= {c.lower() for _, c in figs.PROB_SCALE + figs.LOSS_SCALE} | set(figs.GROUP_COLORS.values())
    assert not used & _placeholders()


def test_probability_heatmap_zero_is_dark_and_one_is_bright():
    fig = figs.level_heatmaps_figure([np.array([[0.0, 1.0]])])
    scale = fig.data[0].colorscale
    assert fig.data[0].zmin == 0.0 and fig.data[0].zmax == 1.0
    lum = [_luminance(c) for _, c in scale]
    assert lum == sorted(lum) and lum[0] < 10 and lum[-1] > 200


def test_loss_maps_name_levels_once_and_groups_as_row_titles():
    """Regression (800 px): 'easy negative · P3' over every panel ran into its neighbours."""
    level_maps = [{"positive": np.ones((3, 4)), "easy negative": np.zeros((3, 4))} for _ in range(5)]
    fig = figs.loss_maps_figure(level_maps, ["positive", "easy negative"], loss_name="Focal")
    assert [a.text for a in fig.layout.annotations] == ["P3", "P4", "P5", "P6", "P7"]
    rows = {fig.layout[f"yaxis{'' if i == 1 else i}"].title.text for i in (1, 6)}
    assert rows == {"positive", "easy negative"}


def test_loss_share_legend_hangs_below_the_bar_labels():
    """Regression: the legend was anchored by its bottom at y=-0.3 and covered the CE / Focal / QFL labels."""
    shares = pd.DataFrame({"group": ["easy negative", "positive"], "anchors": [10, 2], "CE share": [0.8, 0.2]})
    fig = figs.loss_share_figure(shares, ["CE"])
    assert fig.layout.legend.yanchor == "top" and fig.layout.legend.y < 0
    assert fig.layout.margin.b >= 100
