"""Anchors that overlap some box, counted without listing them: the union of rectangles on the anchor grid.

For a box and a (level, cell shape), the anchors with a positive overlap form a rectangle of grid indices
(:func:`overlap_range`, exact in float32). The anchors overlapping at least one box of an image are the union of
those rectangles, counted by :func:`union_cells` with a sweep over horizontal slabs, for many (image, cell shape)
problems at once (:func:`union_counts`: images grouped by their number of boxes, padded with empty rectangles).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explorer.dataset.scan_geometry import Geometry, coord

#: Elements per array of one sweep step (problems x slabs): small enough to stay in the CPU cache.
_SWEEP_CELLS = 65_536


def first_true(pred: Callable[[np.ndarray], np.ndarray], est: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Smallest j in [0, n] with pred(j) true, for a predicate monotone in j, starting from an estimate that is
    off by a few steps at most (floating-point division)."""
    j = np.clip(est, 0, n)
    for _ in range(64):
        down = (j > 0) & pred(np.maximum(j - 1, 0))
        up = (j < n) & ~pred(np.minimum(j, np.maximum(n - 1, 0)))
        if not (down.any() or up.any()):
            return j
        j = j - down + up
    raise RuntimeError("grid index search did not converge")  # pragma: no cover - a bug, not bad input


def overlap_range(
    lo: np.ndarray, hi: np.ndarray, stride: np.ndarray, offset: np.ndarray, cell_lo: np.ndarray, cell_hi: np.ndarray,
    n: np.ndarray, integral: bool,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Grid indices [first, end) whose anchor extent [c(j) + cell_lo, c(j) + cell_hi] overlaps (lo, hi) with a
    positive length, exactly as float32 compares: anchor_hi > lo and anchor_lo < hi. All arguments broadcast
    (boxes (G, 1) against cell shapes (A,) gives (G, A))."""
    c_lo = np.asarray(cell_lo, np.float32)
    c_hi = np.asarray(cell_hi, np.float32)
    if integral:  # integer anchor coordinates j * stride + cell: the bounds in integer arithmetic, exactly
        return _integral_range(lo, hi, stride, c_lo.astype(np.int64), c_hi.astype(np.int64), n)
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    st = stride.astype(np.float64)
    est_first = np.floor((lo64 - offset - c_hi.astype(np.float64)) / st).astype(np.int64) + 1
    est_end = np.ceil((hi64 - offset - c_lo.astype(np.float64)) / st).astype(np.int64)
    first = first_true(lambda j: coord(j, stride, offset, c_hi, False) > lo, est_first, n)
    end = first_true(lambda j: coord(j, stride, offset, c_lo, False) >= hi, est_end, n)
    return first, np.maximum(end, first)


def _integral_range(
    lo: np.ndarray, hi: np.ndarray, stride: np.ndarray, cell_lo: np.ndarray, cell_hi: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`overlap_range` on an integral grid: j * s + cell_hi > lo  <=>  j >= ceil((floor(lo) + 1 - cell_hi) / s),
    and j * s + cell_lo >= hi  <=>  j >= ceil((ceil(hi) - cell_lo) / s), with integer ceiling divisions.
    Coordinates that are not finite (images the reference path redoes) are clipped first."""
    big = float(2**40)
    lo_i = np.floor(np.clip(np.nan_to_num(lo.astype(np.float64)), -big, big)).astype(np.int64)
    hi_i = np.ceil(np.clip(np.nan_to_num(hi.astype(np.float64)), -big, big)).astype(np.int64)
    st = np.asarray(stride, np.int64)
    first = np.clip(-((cell_hi - lo_i - 1) // st), 0, n)
    end = np.clip(-((cell_lo - hi_i) // st), 0, n)
    return first, np.maximum(end, first)


def union_cells(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Number of grid cells covered by the union of K rectangles [x0, x1) x [y0, y1), for P problems at once.

    Sweep over horizontal slabs (between consecutive y edges, or single rows when ``rows`` is smaller); in each
    slab the covered length of the x intervals is the classic running-maximum merge over the rectangles in order
    of x0, one rectangle at a time for all problems and slabs together.

    Args:
        x0, x1, y0, y1: (K, P) integer arrays, the non-empty rectangles of each problem in non-decreasing order of
            x0 along the first axis; empty rectangles (x1 <= x0 or y1 <= y0) may stand anywhere (padding).
        rows: if given and < 2K - 1, sweep rows 0..rows-1 instead of slabs (all y must lie in [0, rows]).

    Returns:
        (P,) int64 covered cells.

    Example:
        >>> union_cells(np.array([[0], [2]]), np.array([[3], [5]]), np.array([[0], [1]]), np.array([[2], [3]])).item()
        11
    """
    k, p = x0.shape
    if k == 0:
        return np.zeros(p, np.int64)
    empty = (x1 <= x0) | (y1 <= y0)
    y0 = np.where(empty, 0, y0)
    y1 = np.where(empty, 0, y1)
    if rows is not None and rows < 2 * k - 1:
        lo = np.arange(rows, dtype=y0.dtype)[:, None]
        hi = lo + 1
        height = None
    else:
        edges = np.sort(np.concatenate([y0, y1], axis=0).T, axis=-1).T  # (2K, P)
        lo, hi = edges[:-1], edges[1:]
        height = (hi - lo).astype(np.int64)
    shape = (len(lo), p)
    run = np.zeros(shape, x1.dtype)  # the right end of the merged intervals so far, per slab
    covered = np.zeros(shape, x1.dtype)
    inside, below = np.empty(shape, bool), np.empty(shape, bool)
    end, start = np.empty(shape, x1.dtype), np.empty(shape, x1.dtype)
    for i in range(k):
        np.less_equal(y0[i], lo, out=inside)
        np.greater_equal(y1[i], hi, out=below)
        np.logical_and(inside, below, out=inside)  # rectangle i covers the slab
        np.multiply(x1[i], inside, out=end)
        np.maximum(x0[i], run, out=start)
        np.maximum(run, end, out=run)
        np.subtract(end, start, out=end)
        np.maximum(end, 0, out=end)
        np.add(covered, end, out=covered)
    if height is None:
        return covered.sum(axis=0, dtype=np.int64)
    return (covered * height).sum(axis=0)


def _box_buckets(per_image: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Images grouped by their number of boxes: exact up to 8, then in ranges about 25 % wide; (padded number of
    boxes, images) per group."""
    out, lo, kb, k_max = [], 0, 1, int(per_image.max(initial=0))
    while lo < k_max:
        imgs = np.flatnonzero((per_image > lo) & (per_image <= kb))
        if len(imgs):
            out.append((kb, imgs))
        lo, kb = kb, kb + 1 if kb < 8 else int(np.ceil(kb * 1.25))
    return out


def union_counts(
    boxes: np.ndarray, b_img: np.ndarray, K: np.ndarray, n_img: int, geo: Geometry, sel: np.ndarray
) -> np.ndarray:
    """(n_img, L) anchors with IoU > 0 with at least one box."""
    num_levels = geo.num_levels
    out = np.zeros((n_img, num_levels), np.int64)
    # Boxes by image, then by left edge: the order of their column ranges for every cell shape.
    perm = np.lexsort((boxes[:, 0], b_img))
    bx = boxes[perm]
    bi = b_img[perm]
    first_box = np.concatenate([[0], np.cumsum(K)])
    plan = []
    for kb, imgs in _box_buckets(K):
        slot = np.arange(kb)[:, None]
        # (kb, P) box rows; an image's missing boxes point at the empty rectangle appended after the last box
        plan.append((kb, imgs, np.where(slot < K[imgs], first_box[imgs] + slot, len(bx))))
    rows_of = sel[bi]
    for lv in range(num_levels):
        cells = geo.cells[lv]
        A = len(cells)
        ranges = []
        for axis, (stride, offset, size) in enumerate(((geo.sw, geo.ox, geo.gw), (geo.sh, geo.oy, geo.gh))):
            first, end = overlap_range(
                bx[:, axis, None], bx[:, axis + 2, None], stride[rows_of, lv, None], offset[rows_of, lv, None],
                cells[:, axis], cells[:, axis + 2], size[rows_of, lv, None], geo.integral,
            )  # fmt: skip
            pad = np.zeros((1, A), np.int32)
            ranges += [np.concatenate([first.astype(np.int32), pad]), np.concatenate([end.astype(np.int32), pad])]
        x0, x1, y0, y1 = ranges
        gh_l = geo.gh[sel, lv]
        for kb, imgs, idx in plan:
            rows = int(gh_l[imgs].max())
            step = max(1, _SWEEP_CELLS // (A * min(2 * kb - 1, rows)))
            for s in range(0, len(imgs), step):
                ii = idx[:, s : s + step]
                p = ii.shape[1]
                counts = union_cells(*(a[ii].reshape(kb, p * A) for a in (x0, x1, y0, y1)), rows=rows)
                out[imgs[s : s + step], lv] = counts.reshape(p, A).sum(axis=1)
    return out
