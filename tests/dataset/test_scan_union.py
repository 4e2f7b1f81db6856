"""The union of rectangles on a grid equals rasterisation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.dataset.scan_union import _box_buckets, overlap_range, union_cells

_RECT = st.tuples(st.integers(0, 30), st.integers(0, 10), st.integers(0, 30), st.integers(0, 10))


def _raster_union(x0, x1, y0, y1, w=40, h=40) -> int:
    grid = np.zeros((h, w), bool)
    for a, b, c, d in zip(x0, x1, y0, y1, strict=True):
        grid[max(c, 0) : max(d, 0), max(a, 0) : max(b, 0)] = True
    return int(grid.sum())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_RECT, min_size=0, max_size=9), min_size=1, max_size=6), st.booleans(), st.randoms())
def test_union_cells_equals_rasterisation(problems, by_rows, rnd):
    """Several problems at once (one per column), each padded to the same K with empty rectangles placed anywhere
    (as ``union_counts`` pads its buckets)."""
    k = max(1, max(len(p) for p in problems))
    cols = []
    for rects in problems:
        rects = sorted((x, x + w, y, y + h) for x, w, y, h in rects)  # sorted by x0, as union_cells requires
        for _ in range(k - len(rects)):  # an empty rectangle (zero width or height) at a random place
            x, y = rnd.randint(0, 30), rnd.randint(0, 30)
            empty = (x, x, y, y + 3) if rnd.random() < 0.5 else (x, x + 3, y, y)
            rects.insert(rnd.randint(0, len(rects)), empty)
        cols.append(rects)
    x0, x1, y0, y1 = (np.array([[c[i][axis] for c in cols] for i in range(k)]) for axis in range(4))
    got = union_cells(x0, x1, y0, y1, rows=40 if by_rows else None)
    want = [_raster_union(x0[:, p], x1[:, p], y0[:, p], y1[:, p]) for p in range(len(cols))]
    assert got.tolist() == want


def test_union_cells_empty_and_single():
    z = np.zeros((0, 3), np.int32)
    assert union_cells(z, z, z, z).tolist() == [0, 0, 0]
    one = np.array([[2]]), np.array([[5]]), np.array([[1]]), np.array([[3]])
    assert union_cells(*one).tolist() == [6]


def test_box_buckets_cover_every_image_with_boxes_once():
    K = np.array([0, 1, 3, 8, 9, 10, 11, 40, 41, 0, 120, 7])
    buckets = _box_buckets(K)
    seen = np.concatenate([imgs for _, imgs in buckets])
    assert sorted(seen.tolist()) == np.flatnonzero(K).tolist()
    for kb, imgs in buckets:
        assert (K[imgs] <= kb).all()
        assert kb <= max(8, int(np.ceil(K[imgs].min() * 1.25)) + 1)  # padding stays within about 25 %
    assert [kb for kb, _ in buckets][:3] == [1, 3, 7]
    assert _box_buckets(np.zeros(4, np.int64)) == []


def test_integral_overlap_ranges_equal_the_float32_search():
    """The integer-arithmetic bounds of an integral grid against the generic search on float32 coordinates, on
    random boxes (integral and fractional edges, outside the grid, not finite) and torchvision-like cells."""
    rng = np.random.default_rng(11)
    g = 4000
    lo = rng.uniform(-300, 1500, g).astype(np.float32)
    lo[::7] = np.round(lo[::7])  # edges on integers
    hi = (lo + rng.uniform(0, 400, g)).astype(np.float32)
    hi[::5] = np.round(hi[::5])
    lo[:3], hi[:3] = np.nan, np.inf  # not finite: any range, no error
    stride = rng.choice([4, 7, 8, 13, 16, 32, 64, 128], g)[:, None]
    n = rng.integers(1, 200, g)[:, None]
    cells = np.array([[-16, 16], [-23, 23], [-11, 12], [-181, 181]], np.float32)
    z = np.zeros((g, 1))
    got = overlap_range(lo[:, None], hi[:, None], stride, z, cells[:, 0], cells[:, 1], n, True)
    f = slice(3, None)  # the generic search needs finite coordinates (the reader drops the others)
    want = overlap_range(lo[f, None], hi[f, None], stride[f], z[f], cells[:, 0], cells[:, 1], n[f], False)
    np.testing.assert_array_equal(got[0][f], want[0])
    np.testing.assert_array_equal(got[1][f], want[1])
    assert got[0].shape == (g, 4) and (got[1] >= got[0]).all()
