"""Tests for explorer.anchors.counts: anchors per level and the grid conventions people quote."""

from __future__ import annotations

import doctest

import pytest

from explorer.anchors import counts as counts_module
from explorer.anchors.counts import count_conventions, counts_per_level, explain_anchor_count, floor_convention_count
from explorer.anchors.grid import AnchorConfig


def test_counts_per_level_800() -> None:
    assert counts_per_level(800, 800, AnchorConfig()) == [90_000, 22_500, 5_625, 1_521, 441]


def test_floor_convention_explained() -> None:
    cfg = AnchorConfig()
    assert floor_convention_count(800, 800, cfg) == 119_745 == 9 * (10_000 + 2_500 + 625 + 144 + 36)
    counts = count_conventions(800, 1333, cfg)
    assert counts == {
        "padded, ceil (all frameworks)": 201_600,
        "floor(side / stride)": 198_675,
        "floor on the padded size": 201_258,
        "ceil without padding": 200_700,
    }
    text = explain_anchor_count(800, 800, cfg)
    assert "120,087" in text and "119,745" in text and "13x13" in text and "P6: 61x61" in text


def test_bad_image_size() -> None:
    with pytest.raises(ValueError, match="image size"):
        floor_convention_count(0, 10, AnchorConfig())


def test_docstring_examples() -> None:
    assert doctest.testmod(counts_module).failed == 0
