"""Anchors that overlap some box, counted without listing them: the union of rectangles on the anchor grid.

For a box and a (level, cell shape), the anchors with a positive overlap form a rectangle of grid indices
(:func:`overlap_range`, exact in float32). The anchors overlapping at least one box of an image are the union of
those rectangles, counted by :func:`union_cells` with a vectorised sweep over horizontal slabs, for all images with
the same number of boxes at once (:func:`union_counts`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explorer.dataset.scan_geometry import Geometry, coord


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
    lo: np.ndarray, hi: np.ndarray, stride: np.ndarray, offset: np.ndarray, cell_lo: np.float32, cell_hi: np.float32,
    n: np.ndarray, integral: bool,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Grid indices [first, end) whose anchor extent [c(j) + cell_lo, c(j) + cell_hi] overlaps (lo, hi) with a
    positive length, exactly as float32 compares: anchor_hi > lo and anchor_lo < hi."""
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    st = stride.astype(np.float64)
    est_first = np.floor((lo64 - offset - float(cell_hi)) / st).astype(np.int64) + 1
    est_end = np.ceil((hi64 - offset - float(cell_lo)) / st).astype(np.int64)
    if integral:  # exact integer coordinates: compare in float64 (the float32 values are the same numbers)
        c_hi, c_lo = float(cell_hi), float(cell_lo)
        first = first_true(lambda j: j * st + c_hi > lo64, est_first, n)
        end = first_true(lambda j: j * st + c_lo >= hi64, est_end, n)
    else:
        first = first_true(lambda j: coord(j, stride, offset, cell_hi, False) > lo, est_first, n)
        end = first_true(lambda j: coord(j, stride, offset, cell_lo, False) >= hi, est_end, n)
    return first, np.maximum(end, first)


def union_cells(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Number of grid cells covered by the union of K rectangles [x0, x1) x [y0, y1), for many problems at once.

    Sweep over horizontal slabs (between consecutive y edges, or single rows when ``rows`` is smaller); in each
    slab the covered length of the x intervals is the classic running-maximum merge, which needs the intervals in
    order of x0: the rectangles must be sorted by x0 along the last axis.

    Args:
        x0, x1, y0, y1: (..., K) integer arrays; empty rectangles (x1 <= x0 or y1 <= y0) are allowed.
        rows: if given and < 2K - 1, sweep rows 0..rows-1 instead of slabs (all y must lie in [0, rows]).

    Returns:
        (...,) int64 covered cells.

    Example:
        >>> union_cells(np.array([0, 2]), np.array([3, 5]), np.array([0, 1]), np.array([2, 3])).item()
        11
    """
    k = x0.shape[-1]
    if k == 0:
        return np.zeros(x0.shape[:-1], np.int64)
    if k == 1:
        return (np.maximum(x1 - x0, 0).astype(np.int64) * np.maximum(y1 - y0, 0))[..., 0]
    empty = (x1 <= x0) | (y1 <= y0)
    y0 = np.where(empty, 0, y0)
    y1 = np.where(empty, 0, y1)
    if rows is not None and rows < 2 * k - 1:
        lo = np.arange(rows, dtype=y0.dtype)
        hi = lo + 1
        lo = np.broadcast_to(lo, (*y0.shape[:-1], rows))
        hi = np.broadcast_to(hi, (*y0.shape[:-1], rows))
    else:
        edges = np.sort(np.concatenate([y0, y1], axis=-1), axis=-1)
        lo, hi = edges[..., :-1], edges[..., 1:]
    height = (hi - lo).astype(np.int64)
    cover = (y0[..., None, :] <= lo[..., :, None]) & (y1[..., None, :] >= hi[..., :, None])
    end = np.where(cover, x1[..., None, :], 0)
    run = np.maximum.accumulate(end, axis=-1)
    start = np.broadcast_to(x0[..., None, :], end.shape).copy()
    np.maximum(start[..., 1:], run[..., :-1], out=start[..., 1:])
    length = np.maximum(end - start, 0).sum(axis=-1, dtype=np.int64)
    return (length * height).sum(axis=-1)


def union_counts(
    boxes: np.ndarray, b_img: np.ndarray, K: np.ndarray, n_img: int, geo: Geometry, sel: np.ndarray
) -> np.ndarray:
    """(n_img, L) anchors with IoU > 0 with at least one box."""
    num_levels = geo.num_levels
    out = np.zeros((n_img, num_levels), np.int64)
    # Sort boxes by x1 within each image (the order of their column ranges for every cell shape).
    perm = np.lexsort((boxes[:, 0], b_img))
    bx = boxes[perm]
    bi = b_img[perm]
    first_box = np.concatenate([[0], np.cumsum(K)])
    ks = np.unique(K[K > 0])
    for lv in range(num_levels):
        cells = geo.cells[lv]
        A = len(cells)
        g_sw, g_sh = geo.sw[sel][bi, lv], geo.sh[sel][bi, lv]
        g_ox, g_oy = geo.ox[sel][bi, lv], geo.oy[sel][bi, lv]
        g_gw, g_gh = geo.gw[sel][bi, lv], geo.gh[sel][bi, lv]
        x0 = np.empty((len(bx), A), np.int32)
        x1, y0, y1 = np.empty_like(x0), np.empty_like(x0), np.empty_like(x0)
        for a in range(A):
            x0[:, a], x1[:, a] = overlap_range(
                bx[:, 0], bx[:, 2], g_sw, g_ox, cells[a, 0], cells[a, 2], g_gw, geo.integral
            )
            y0[:, a], y1[:, a] = overlap_range(
                bx[:, 1], bx[:, 3], g_sh, g_oy, cells[a, 1], cells[a, 3], g_gh, geo.integral
            )
        gh_l = geo.gh[sel][:, lv]
        for k in ks.tolist():
            imgs = np.flatnonzero(k == K)
            idx = first_box[imgs][:, None] + np.arange(k)[None, :]  # (P, k)
            rows = int(gh_l[imgs].max())
            # Bound memory: P * A * slabs * k elements per batch.
            slabs = min(2 * k - 1, rows)
            step = max(1, 4_000_000 // max(1, A * slabs * k))
            for s in range(0, len(imgs), step):
                sl = slice(s, s + step)
                ii = idx[sl]
                counts = union_cells(
                    x0[ii].transpose(0, 2, 1),
                    x1[ii].transpose(0, 2, 1),
                    y0[ii].transpose(0, 2, 1),
                    y1[ii].transpose(0, 2, 1),
                    rows=rows,
                )
                out[imgs[sl], lv] = counts.sum(axis=1)
    return out
