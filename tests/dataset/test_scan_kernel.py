"""The compiled kernel's pieces: the union of rectangles on a grid equals rasterisation; the overlap ranges of an
integral grid (integer arithmetic) equal the search on float32 coordinates."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.dataset.scan_kernel import coord, overlap_range, union_area

_RECT = st.tuples(st.integers(0, 30), st.integers(1, 10), st.integers(0, 30), st.integers(1, 10))


def _raster_union(rects, w=40, h=40) -> int:
    grid = np.zeros((h, w), bool)
    for x0, x1, y0, y1 in rects:
        grid[y0:y1, x0:x1] = True
    return int(grid.sum())


def _union(rects, rows: int) -> int:
    x0, x1, y0, y1 = (np.array([r[axis] for r in rects] or [0], np.int64) for axis in range(4))
    return union_area(x0, x1, y0, y1, len(rects), rows, np.empty(2 * max(len(rects), 1), np.int64))


@settings(max_examples=200, deadline=None)
@given(st.lists(_RECT, min_size=0, max_size=12), st.sampled_from([40, 3]))
def test_union_area_equals_rasterisation(raw, rows):
    """Slabs between y edges (40 rows) and single rows (3 rows: fewer than 2K - 1 slabs once K >= 3)."""
    rects = sorted((x, x + w, min(y, rows - 1), min(y + h, rows)) for x, w, y, h in raw)  # x0 order, y in [0, rows]
    rects = [r for r in rects if r[3] > r[2]]
    assert _union(rects, rows) == _raster_union(rects)


def test_union_area_empty_and_single():
    assert _union([], 10) == 0
    assert _union([(2, 5, 1, 3)], 10) == 6
    assert _union([(0, 3, 0, 2), (2, 5, 1, 3)], 10) == 11


def test_integral_overlap_ranges_equal_the_float32_search():
    """The integer-arithmetic bounds of an integral grid against the generic search on float32 coordinates, on
    random boxes (integral and fractional edges, outside the grid) and torchvision-like cells; each range checked
    against its definition too (anchor_hi > lo and anchor_lo < hi exactly on the float32 coordinates)."""
    rng = np.random.default_rng(11)
    cells = np.array([[-16, 16], [-23, 23], [-11, 12], [-181, 181]], np.float32)
    for _ in range(1500):
        lo = np.float32(rng.uniform(-300, 1500))
        lo = np.float32(np.round(lo)) if rng.random() < 0.2 else lo  # edges on integers
        hi = np.float32(lo + rng.uniform(0, 400))
        hi = np.float32(np.round(hi)) if rng.random() < 0.2 else hi
        stride = int(rng.choice([4, 7, 8, 13, 16, 32, 64, 128]))
        n = int(rng.integers(1, 200))
        for c_lo, c_hi in cells:
            got = overlap_range(lo, hi, stride, 0.0, c_lo, c_hi, n, True)
            assert got == overlap_range(lo, hi, stride, 0.0, c_lo, c_hi, n, False)
            inside = [
                j
                for j in range(n)
                if coord(j, stride, 0.0, c_hi, False) > lo and coord(j, stride, 0.0, c_lo, False) < hi
            ]
            assert got == ((inside[0], inside[-1] + 1) if inside else (got[0], got[0]))


def test_overlap_range_of_coordinates_far_outside_the_grid():
    assert overlap_range(np.float32(-1e30), np.float32(1e30), 8, 0.0, np.float32(-16), np.float32(16), 50, True) == (
        0,
        50,
    )
    assert overlap_range(np.float32(1e30), np.float32(2e30), 8, 0.0, np.float32(-16), np.float32(16), 50, True) == (
        50,
        50,
    )
