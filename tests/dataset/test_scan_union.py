"""The union of rectangles on a grid equals rasterisation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.dataset.scan_union import union_cells


def _raster_union(x0, x1, y0, y1, w=40, h=40) -> int:
    grid = np.zeros((h, w), bool)
    for a, b, c, d in zip(x0, x1, y0, y1, strict=True):
        grid[max(c, 0) : max(d, 0), max(a, 0) : max(b, 0)] = True
    return int(grid.sum())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 10), st.integers(0, 30), st.integers(0, 10)),
        min_size=1,
        max_size=9,
    ),
    st.booleans(),
)
def test_union_cells_equals_rasterisation(rects, by_rows):
    rects = sorted(rects)  # sorted by x0, as union_cells requires
    x0 = np.array([r[0] for r in rects])
    x1 = x0 + np.array([r[1] for r in rects])
    y0 = np.array([r[2] for r in rects])
    y1 = y0 + np.array([r[3] for r in rects])
    got = union_cells(x0[None], x1[None], y0[None], y1[None], rows=40 if by_rows else None)
    assert got.tolist() == [_raster_union(x0, x1, y0, y1)]


def test_union_cells_empty_and_single():
    z = np.zeros((3, 0), np.int32)
    assert union_cells(z, z, z, z).tolist() == [0, 0, 0]
    one = np.array([[2]]), np.array([[5]]), np.array([[1]]), np.array([[3]])
    assert union_cells(*one).tolist() == [6]
