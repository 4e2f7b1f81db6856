"""The sparse IoU of anchors and GT boxes, in torchvision's float32 order (:mod:`explorer.boxes`).

Labeling only needs the (anchor, GT) pairs whose boxes intersect. Only anchors near a box can overlap it, so with
the anchor grid (:func:`explorer.anchors.grid.level_grids`) the pairs are found per level by binary search on the
exact float32 anchor coordinates of each row and column (:func:`sparse_iou_grid`), and their IoU is computed with
torchvision's float32 arithmetic (``inter / (area1 + area2 - inter)``): threshold decisions match
``torchvision.ops.box_iou`` + ``Matcher`` bit for bit, without ever building the dense (M, N) matrix. Without a
grid, :func:`sparse_iou_dense` computes the dense IoU in memory-bounded chunks.

Example:
    >>> sp = SparseIoU.from_dense(np.array([[0.0, 0.6, 0.3], [0.2, 0.0, 0.3]], np.float32))
    >>> sp.anchor_idx.tolist(), sp.gt_idx.tolist()
    ([1, 2, 0, 2], [0, 0, 1, 1])
    >>> sp.anchor_max[1].tolist()  # per-anchor argmax GT: the lowest GT on the tie of anchor 2
    [1, 0, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from explorer.anchors.grid import LevelGrid, level_offsets
from explorer.boxes import CHUNK_PAIRS, area, as_boxes, box_iou, iou_from_areas_, ragged_arange


@dataclass(frozen=True)
class SparseIoU:
    """The non-zero entries of an (M GT x N anchor) IoU matrix.

    Attributes:
        anchor_idx: (K,) int64 anchor index of each pair.
        gt_idx: (K,) int64 GT index of each pair.
        iou: (K,) float32 IoU (> 0) of each pair.
        num_anchors: N.
        num_gt: M.
    """

    anchor_idx: np.ndarray
    gt_idx: np.ndarray
    iou: np.ndarray
    num_anchors: int
    num_gt: int

    @classmethod
    def from_dense(cls, iou_gt_by_anchor: np.ndarray) -> SparseIoU:
        """From a dense (M, N) matrix (rows = GT, as torchvision's ``match_quality_matrix``)."""
        q = np.asarray(iou_gt_by_anchor, dtype=np.float32)
        if q.ndim != 2:
            raise ValueError(f"IoU matrix must be 2-D (M, N), got shape {q.shape}")
        g, a = np.nonzero(q > 0)
        return cls(a.astype(np.int64), g.astype(np.int64), q[g, a], int(q.shape[1]), int(q.shape[0]))

    @cached_property
    def anchor_max(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-anchor max IoU (N,) float32 and argmax GT (N,) int64 (lowest GT on ties, -1 without overlap).

        Computed once per instance; the arrays are shared, so they are read-only."""
        return _read_only(_per_anchor_max(self))

    @cached_property
    def gt_best(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-GT best IoU (M,), best anchor (M,) (lowest index on ties, -1 if none), and the (K,) mask of pairs
        tied at their GT's best IoU. Computed once per instance; read-only."""
        return _read_only(_per_gt_best(self))

    def to_dense(self) -> np.ndarray:
        """(M, N) float32 matrix (zeros where boxes do not intersect)."""
        q = np.zeros((self.num_gt, self.num_anchors), np.float32)
        q[self.gt_idx, self.anchor_idx] = self.iou
        return q


def _read_only(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _per_anchor_max(sp: SparseIoU) -> tuple[np.ndarray, np.ndarray]:
    """Per-anchor max IoU (N,) float32 and argmax GT (N,) int64 (lowest GT on ties, -1 when no overlap)."""
    n, m = sp.num_anchors, sp.num_gt
    max_iou = np.zeros(n, np.float32)
    np.maximum.at(max_iou, sp.anchor_idx, sp.iou)
    argmax = np.full(n, m, np.int64)
    tied = sp.iou == max_iou[sp.anchor_idx]
    np.minimum.at(argmax, sp.anchor_idx[tied], sp.gt_idx[tied])
    argmax[argmax == m] = -1
    return max_iou, argmax


def _per_gt_best(sp: SparseIoU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-GT best IoU (M,), best anchor (M,) (lowest index on ties, -1 if none) and the tie mask over pairs."""
    n, m = sp.num_anchors, sp.num_gt
    best = np.zeros(m, np.float32)
    if len(sp.iou):
        # Pairs come in runs of one GT (grid order): reduce each run, then the few run maxima per GT.
        g = sp.gt_idx
        starts = np.concatenate([[0], np.flatnonzero(g[1:] != g[:-1]) + 1])
        np.maximum.at(best, g[starts], np.maximum.reduceat(sp.iou, starts))
    tied = sp.iou == best[sp.gt_idx]
    best_anchor = np.full(m, n, np.int64)
    np.minimum.at(best_anchor, sp.gt_idx[tied], sp.anchor_idx[tied])
    best_anchor[best_anchor == n] = -1
    return best, best_anchor, tied


def _empty_sparse(n: int, m: int) -> SparseIoU:
    return SparseIoU(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), n, m)


@dataclass(frozen=True)
class _Chunk:
    """The pairs of one (level, cell-anchor shape): GTs with a non-empty column and row range."""

    start: int  # first anchor index of the level
    gw: int
    na: int
    a: int
    g_ok: np.ndarray
    i_lo: np.ndarray
    ni: np.ndarray
    j_lo: np.ndarray
    nj: np.ndarray
    cx1: np.ndarray
    cx2: np.ndarray
    ry1: np.ndarray
    ry2: np.ndarray

    @property
    def num_pairs(self) -> int:
        return int((self.ni * self.nj).sum())


def _grid_chunks(anchors: np.ndarray, gt: np.ndarray, grids: Sequence[LevelGrid], offsets: np.ndarray) -> list[_Chunk]:
    gx1, gy1, gx2, gy2 = gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3]
    chunks = []
    for grid, start in zip(grids, offsets[:-1], strict=True):
        gh, gw = grid.grid_hw
        na = len(grid.cell_anchors)
        block = anchors[start : start + gh * gw * na].reshape(gh, gw, na, 4)
        # Column extents (x) from row 0, row extents (y) from column 0: (na, gw) and (na, gh).
        cx1, cx2 = np.ascontiguousarray(block[0, :, :, 0].T), np.ascontiguousarray(block[0, :, :, 2].T)
        ry1, ry2 = np.ascontiguousarray(block[:, 0, :, 1].T), np.ascontiguousarray(block[:, 0, :, 3].T)
        for a in range(na):
            # Columns j with x2 > gx1 and x1 < gx2 form one range, as the extents increase with j; rows alike.
            j_lo = np.searchsorted(cx2[a], gx1, side="right")
            nj = np.searchsorted(cx1[a], gx2, side="left") - j_lo
            i_lo = np.searchsorted(ry2[a], gy1, side="right")
            ni = np.searchsorted(ry1[a], gy2, side="left") - i_lo
            g_ok = np.nonzero((nj > 0) & (ni > 0))[0]
            if len(g_ok):
                chunks.append(
                    _Chunk(int(start), gw, na, a, g_ok, i_lo[g_ok], ni[g_ok], j_lo[g_ok], nj[g_ok],
                           cx1[a], cx2[a], ry1[a], ry2[a])
                )  # fmt: skip
    return chunks


def _chunk_pairs(
    c: _Chunk,
    gt: np.ndarray,
    area_g: np.ndarray,
    ramp: np.ndarray,
    *,
    a_out: np.ndarray,
    g_out: np.ndarray,
    iou_out: np.ndarray,
    int_tmp: np.ndarray,
    float_tmp: np.ndarray,
) -> None:
    """Write the anchor index, GT index and IoU of every pair of one chunk into the (c.num_pairs,) output views;
    ``int_tmp`` and ``float_tmp`` are scratch views of the same length."""
    gx1, gy1, gx2, gy2 = gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3]
    k = c.num_pairs
    # Per (GT, column): intersection width and anchor width.
    jv = ragged_arange(c.j_lo, c.nj)
    jq = np.repeat(c.g_ok, c.nj)
    col_x1, col_x2 = c.cx1[jv], c.cx2[jv]
    iw_col = np.minimum(col_x2, gx2[jq]) - np.maximum(col_x1, gx1[jq])
    aw_col = col_x2 - col_x1
    col_start = np.cumsum(c.nj) - c.nj
    # Per (GT, row): intersection height, anchor height; each row is one run of nj pairs.
    iv = ragged_arange(c.i_lo, c.ni)
    rq = np.repeat(np.arange(len(c.g_ok)), c.ni)
    iq = c.g_ok[rq]
    row_y1, row_y2 = c.ry1[iv], c.ry2[iv]
    ih_row = np.minimum(row_y2, gy2[iq]) - np.maximum(row_y1, gy1[iq])
    ah_row = row_y2 - row_y1
    run = c.nj[rq]
    # Position of each pair within its row run (a repeat-based ragged arange: no sequential cumsum).
    within = int_tmp
    np.subtract(ramp[:k], np.repeat(np.cumsum(run) - run, run), out=within)
    np.multiply(within, c.na, out=a_out)
    a_out += np.repeat(c.start + (iv * c.gw + c.j_lo[rq]) * c.na + c.a, run)
    within += np.repeat(col_start[rq], run)  # now the index into the per-(GT, column) arrays
    g_out[:] = np.repeat(iq, run)
    inter = iou_out
    np.take(iw_col, within, out=inter, mode="clip")
    inter *= np.repeat(ih_row, run)  # iw * ih
    area_a = float_tmp
    np.take(aw_col, within, out=area_a, mode="clip")
    area_a *= np.repeat(ah_row, run)  # (x2 - x1) * (y2 - y1)
    iou_from_areas_(inter, area_a, np.repeat(area_g[iq], run))


def sparse_iou_grid(anchors: np.ndarray, gt_boxes: np.ndarray, grids: Sequence[LevelGrid]) -> SparseIoU:
    """Intersecting (anchor, GT) pairs and their IoU, using the anchor grid to visit only nearby anchors.

    For each level and cell-anchor shape, the x-extent of every anchor column and the y-extent of every anchor
    row are read from ``anchors`` itself (an anchor's x1, x2 depend only on its column, y1, y2 only on its row), so
    the intersecting columns and rows of each GT are found exactly by binary search. The IoU of a pair is then
    ``iw * ih / (aw * ah + area_gt - iw * ih)`` with the same float32 values and operations as
    ``torchvision.ops.box_iou``, so it is bit-identical to it.

    Args:
        anchors: (N, 4) float32 xyxy from :func:`explorer.anchors.grid.generate_anchors` for the same ``grids``.
        gt_boxes: (M, 4) xyxy.
        grids: from :func:`explorer.anchors.grid.level_grids`.

    Returns:
        The pairs with IoU > 0, grouped by level and cell-anchor shape, then by GT.
    """
    anchors = as_boxes(anchors, "anchors")
    gt = as_boxes(gt_boxes, "gt_boxes")
    n, m = len(anchors), len(gt)
    offsets = level_offsets(list(grids))
    if offsets[-1] != n:
        raise ValueError(f"grids describe {offsets[-1]} anchors but {n} were given")
    if m == 0 or n == 0:
        return _empty_sparse(n, m)
    chunks = _grid_chunks(anchors, gt, grids, offsets)
    total = sum(c.num_pairs for c in chunks)
    a_idx = np.empty(total, np.int64)
    g_idx = np.empty(total, np.int64)
    iou = np.empty(total, np.float32)
    col = np.empty(total, np.int64)
    tmp = np.empty(total, np.float32)
    ramp = np.arange(max((c.num_pairs for c in chunks), default=0), dtype=np.int64)
    area_g = area(gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3])
    pos = 0
    for c in chunks:
        sl = slice(pos, pos + c.num_pairs)
        pos += c.num_pairs
        _chunk_pairs(
            c, gt, area_g, ramp, a_out=a_idx[sl], g_out=g_idx[sl], iou_out=iou[sl], int_tmp=col[sl], float_tmp=tmp[sl]
        )
    if total and not (iou > 0).all():
        keep = iou > 0
        a_idx, g_idx, iou = a_idx[keep], g_idx[keep], iou[keep]
    return SparseIoU(a_idx, g_idx, iou, n, m)


def sparse_iou_dense(anchors: np.ndarray, gt_boxes: np.ndarray) -> SparseIoU:
    """Intersecting pairs for arbitrary anchors (no grid): dense IoU in memory-bounded chunks."""
    anchors = as_boxes(anchors, "anchors")
    gt = as_boxes(gt_boxes, "gt_boxes")
    n, m = len(anchors), len(gt)
    if n == 0 or m == 0:
        return _empty_sparse(n, m)
    step = max(1, CHUNK_PAIRS // m)
    parts_a, parts_g, parts_v = [], [], []
    for s in range(0, n, step):
        q = box_iou(anchors[s : s + step], gt)
        a, g = np.nonzero(q > 0)
        parts_a.append(a + s)
        parts_g.append(g)
        parts_v.append(q[a, g])
    return SparseIoU(
        np.concatenate(parts_a).astype(np.int64),
        np.concatenate(parts_g).astype(np.int64),
        np.concatenate(parts_v).astype(np.float32),
        n,
        m,
    )


def sparse_iou(anchors: np.ndarray, gt_boxes: np.ndarray, grids: Sequence[LevelGrid] | None = None) -> SparseIoU:
    """Intersecting (anchor, GT) pairs: the fast grid path when ``grids`` is given, else chunked dense IoU."""
    if grids is not None:
        return sparse_iou_grid(anchors, gt_boxes, grids)
    return sparse_iou_dense(anchors, gt_boxes)
