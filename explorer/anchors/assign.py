"""IoU and anchor label assignment: max-IoU (torchvision / mmdet low-quality semantics) and ATSS.

Everything works on a *sparse* IoU: the (anchor, GT) pairs whose boxes intersect. Only anchors near a box can
overlap it, so with the anchor grid (:func:`explorer.anchors.grid.level_grids`) the pairs are found per level by binary
search on the exact float32 anchor coordinates of each row and column, and their IoU is computed with
torchvision's float32 arithmetic (``inter / (area1 + area2 - inter)``): threshold decisions match
``torchvision.ops.box_iou`` + ``Matcher`` bit for bit, without ever building the dense (M, N) matrix.

Labels per anchor (int8): :data:`EASY_NEGATIVE` (max IoU exactly 0), :data:`HARD_NEGATIVE`
(0 < max IoU < neg threshold), :data:`IGNORED` (the band between thresholds) and :data:`POSITIVE`.

Example (reference.md §6.1, torchvision semantics):
    >>> q = np.array([[0.10, 0.60, 0.45, 0.30, 0.00, 0.20],
    ...               [0.35, 0.15, 0.42, 0.38, 0.00, 0.10],
    ...               [0.05, 0.00, 0.00, 0.20, 0.30, 0.30]], dtype=np.float32)
    >>> match_iou_matrix(q, 0.5, 0.4, low_quality=True).tolist()
    [-1, 0, 0, -1, 2, 2]
    >>> a = assign_from_sparse(SparseIoU.from_dense(q))
    >>> a.label.tolist(), a.no_positive.tolist()
    ([1, 3, 3, 1, 3, 3], [False, True, False])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from explorer.anchors.grid import LevelGrid, level_offsets
from explorer.labels import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    EASY_NEGATIVE,
    HARD_NEGATIVE,
    IGNORED,
    LABEL_NAMES,
    POSITIVE,
)

SEMANTICS: tuple[str, ...] = ("torchvision", "mmdet")

#: Pairs of boxes per chunk in the dense IoU (bounds memory: about 40 bytes per pair).
_CHUNK_PAIRS = 4_000_000


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return arr


def _iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[k] with b[k], (K,) float32, with torchvision's float32 operation order."""
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU, the same float32 arithmetic as ``torchvision.ops.box_iou``; chunked to bound memory.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.

    Returns:
        (N, M) float32. Pairs of two zero-area boxes give NaN, as in torchvision.

    Example:
        >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 10]])).round(6)
        array([[1.      , 0.142857, 0.      ]], dtype=float32)
    """
    b1 = _as_boxes(boxes1, "boxes1")
    b2 = _as_boxes(boxes2, "boxes2")
    n, m = len(b1), len(b2)
    out = np.empty((n, m), np.float32)
    if n == 0 or m == 0:
        return out
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    step = max(1, _CHUNK_PAIRS // m)
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in range(0, n, step):
            c = b1[s : s + step]
            w = np.minimum(c[:, None, 2], b2[None, :, 2]) - np.maximum(c[:, None, 0], b2[None, :, 0])
            h = np.minimum(c[:, None, 3], b2[None, :, 3]) - np.maximum(c[:, None, 1], b2[None, :, 1])
            inter = np.maximum(w, 0) * np.maximum(h, 0)
            out[s : s + step] = inter / (area1[s : s + step, None] + area2[None, :] - inter)
    return out


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


def _empty_sparse(n: int, m: int) -> SparseIoU:
    return SparseIoU(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), n, m)


def _ragged_arange(starts: np.ndarray, lengths: np.ndarray, step: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Concatenation of ``starts[r] + step * arange(lengths[r])`` over runs r (all lengths > 0)."""
    total = int(lengths.sum())
    if out is None:
        out = np.empty(total, np.int64)
    out.fill(step)
    first = np.cumsum(lengths) - lengths
    out[first[0]] = starts[0]
    out[first[1:]] = starts[1:] - (starts[:-1] + step * (lengths[:-1] - 1))
    return np.cumsum(out, out=out)


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
    anchors = _as_boxes(anchors, "anchors")
    gt = _as_boxes(gt_boxes, "gt_boxes")
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
    gx1, gy1, gx2, gy2 = gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3]
    area_g = (gx2 - gx1) * (gy2 - gy1)
    pos = 0
    for c in chunks:
        k = c.num_pairs
        sl = slice(pos, pos + k)
        pos += k
        # Per (GT, column): intersection width and anchor width.
        jv = _ragged_arange(c.j_lo, c.nj)
        jq = np.repeat(c.g_ok, c.nj)
        col_x1, col_x2 = c.cx1[jv], c.cx2[jv]
        iw_col = np.minimum(col_x2, gx2[jq]) - np.maximum(col_x1, gx1[jq])
        aw_col = col_x2 - col_x1
        col_start = np.cumsum(c.nj) - c.nj
        # Per (GT, row): intersection height, anchor height; each row is one run of nj pairs.
        iv = _ragged_arange(c.i_lo, c.ni)
        rq = np.repeat(np.arange(len(c.g_ok)), c.ni)
        iq = c.g_ok[rq]
        row_y1, row_y2 = c.ry1[iv], c.ry2[iv]
        ih_row = np.minimum(row_y2, gy2[iq]) - np.maximum(row_y1, gy1[iq])
        ah_row = row_y2 - row_y1
        run = c.nj[rq]
        # Position of each pair within its row run (a repeat-based ragged arange: no sequential cumsum).
        within = col[sl]
        np.subtract(ramp[:k], np.repeat(np.cumsum(run) - run, run), out=within)
        a_out = a_idx[sl]
        np.multiply(within, c.na, out=a_out)
        a_out += np.repeat(c.start + (iv * c.gw + c.j_lo[rq]) * c.na + c.a, run)
        within += np.repeat(col_start[rq], run)  # now the index into the per-(GT, column) arrays
        g_idx[sl] = np.repeat(iq, run)
        inter = iou[sl]
        np.take(iw_col, within, out=inter, mode="clip")
        inter *= np.repeat(ih_row, run)  # iw * ih
        area = tmp[sl]
        np.take(aw_col, within, out=area, mode="clip")
        area *= np.repeat(ah_row, run)  # (x2 - x1) * (y2 - y1)
        area += np.repeat(area_g[iq], run)
        area -= inter  # union = area_anchor + area_gt - inter
        np.divide(inter, area, out=inter)
    if total and not (iou > 0).all():
        keep = iou > 0
        a_idx, g_idx, iou = a_idx[keep], g_idx[keep], iou[keep]
    return SparseIoU(a_idx, g_idx, iou, n, m)


def sparse_iou_dense(anchors: np.ndarray, gt_boxes: np.ndarray) -> SparseIoU:
    """Intersecting pairs for arbitrary anchors (no grid): dense IoU in memory-bounded chunks."""
    anchors = _as_boxes(anchors, "anchors")
    gt = _as_boxes(gt_boxes, "gt_boxes")
    n, m = len(anchors), len(gt)
    if n == 0 or m == 0:
        return _empty_sparse(n, m)
    step = max(1, _CHUNK_PAIRS // m)
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


def match_iou_matrix(
    iou_gt_by_anchor: np.ndarray,
    pos_thresh: float = 0.5,
    neg_thresh: float = 0.4,
    *,
    low_quality: bool = True,
    semantics: str = "torchvision",
) -> np.ndarray:
    """Dense reference matcher on an (M, N) IoU matrix, returning torchvision's codes.

    Args:
        iou_gt_by_anchor: (M, N) IoU, rows = GT (torchvision's ``match_quality_matrix``).
        pos_thresh, neg_thresh: IoU >= pos is positive, neg <= IoU < pos is ignored (-2), below neg is -1.
        low_quality: add low-quality matches: each GT's best anchors (ties included) become positive.
        semantics: ``"torchvision"`` (a promoted anchor keeps its own argmax GT) or ``"mmdet"`` (it is assigned
            the GT that selected it; later GTs overwrite earlier ones).

    Returns:
        (N,) int64: GT index, -1 (below) or -2 (between thresholds).
    """
    _check_thresholds(pos_thresh, neg_thresh, semantics)
    q = np.asarray(iou_gt_by_anchor, dtype=np.float32)
    if q.ndim != 2 or q.size == 0:
        raise ValueError(f"IoU matrix must be non-empty (M, N), got shape {q.shape}")
    matched_vals = q.max(axis=0)
    matches = q.argmax(axis=0).astype(np.int64)
    all_matches = matches.copy()
    matches[matched_vals < neg_thresh] = BELOW_LOW_THRESHOLD
    matches[(matched_vals >= neg_thresh) & (matched_vals < pos_thresh)] = BETWEEN_THRESHOLDS
    if low_quality:
        best = q.max(axis=1)
        if semantics == "torchvision":
            _, cols = np.nonzero(q == best[:, None])
            matches[cols] = all_matches[cols]
        else:
            for g in range(q.shape[0]):
                matches[q[g] == best[g]] = g
    return matches


def _check_thresholds(pos_thresh: float, neg_thresh: float, semantics: str) -> None:
    if not 0.0 <= neg_thresh <= pos_thresh <= 1.0:
        raise ValueError(f"need 0 <= neg_thresh <= pos_thresh <= 1, got neg={neg_thresh}, pos={pos_thresh}")
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")


@dataclass(frozen=True)
class Assignment:
    """Per-anchor and per-GT results of a label assignment.

    ``max_iou``, ``argmax_gt``, ``best_iou`` and ``best_anchor`` are shared with the :class:`SparseIoU` they came
    from (computed once per IoU, whatever the thresholds) and are read-only; copy them to modify.

    Per anchor (N,):
        label: int8 :data:`EASY_NEGATIVE`, :data:`HARD_NEGATIVE`, :data:`IGNORED` or :data:`POSITIVE`.
        matched_gt: int64 GT of a positive anchor, -1 otherwise.
        max_iou: float32 best IoU over all GTs (0 = overlaps nothing).
        argmax_gt: int64 GT with the best IoU (lowest index on ties), -1 when max_iou is 0.
        matched_iou: float32 IoU with the matched GT (0 when not positive).
        low_quality: bool, positive only because of the low-quality rule.
        level: int64 level index 0..L-1, or None when unknown.
    Per GT (M,):
        num_positive: int64 positive anchors matched to the GT.
        num_ignored: int64 ignored anchors whose best GT it is.
        best_iou: float32 best IoU over all anchors.
        best_anchor: int64 anchor with that IoU (lowest index on ties), -1 if no anchor overlaps.
        best_level: int64 level index of best_anchor, -1 if unknown.
        low_quality_only: bool, has positives but all of them come from the low-quality rule.
        no_positive: bool, no positive anchor at all.
        threshold: float32 ATSS IoU threshold (mean + std) per GT, NaN for max-IoU.
    """

    label: np.ndarray
    matched_gt: np.ndarray
    max_iou: np.ndarray
    argmax_gt: np.ndarray
    matched_iou: np.ndarray
    low_quality: np.ndarray
    level: np.ndarray | None
    num_positive: np.ndarray
    num_ignored: np.ndarray
    best_iou: np.ndarray
    best_anchor: np.ndarray
    best_level: np.ndarray
    low_quality_only: np.ndarray
    no_positive: np.ndarray
    threshold: np.ndarray
    method: str = "max_iou"
    pos_thresh: float = 0.5
    neg_thresh: float = 0.4

    @property
    def num_anchors(self) -> int:
        return len(self.label)

    @property
    def num_gt(self) -> int:
        return len(self.num_positive)

    def label_counts(self) -> dict[str, int]:
        """Anchors per label name."""
        counts = np.bincount(self.label.astype(np.int64), minlength=4)
        return {LABEL_NAMES[k]: int(counts[k]) for k in LABEL_NAMES}


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


def _finish(
    sp: SparseIoU,
    matched: np.ndarray,
    max_iou: np.ndarray,
    argmax: np.ndarray,
    best: np.ndarray,
    best_anchor: np.ndarray,
    *,
    pos_thresh: float,
    neg_thresh: float,
    levels: np.ndarray | None,
    method: str,
    threshold: np.ndarray | None = None,
) -> Assignment:
    n, m = sp.num_anchors, sp.num_gt
    positive = matched >= 0
    label = np.where(max_iou > 0, HARD_NEGATIVE, EASY_NEGATIVE).astype(np.int8)
    label[matched == BETWEEN_THRESHOLDS] = IGNORED
    label[positive] = POSITIVE
    # IoU with the matched GT: equal to max_iou unless the matched GT is not the argmax (mmdet low quality, ATSS).
    matched_iou = np.where(positive, max_iou, 0).astype(np.float32)
    off = positive & (matched != argmax)
    if off.any():
        matched_iou[off] = 0
        pair_hit = off[sp.anchor_idx] & (sp.gt_idx == matched[sp.anchor_idx])
        matched_iou[sp.anchor_idx[pair_hit]] = sp.iou[pair_hit]
    if method == "max_iou":
        low_quality = positive & ((max_iou < pos_thresh) | (matched != argmax))
    else:
        low_quality = np.zeros(n, bool)
    matched_pos = matched[positive]
    num_positive = np.bincount(matched_pos, minlength=m)[:m].astype(np.int64)
    regular = np.bincount(matched[positive & ~low_quality], minlength=m)[:m]
    ignored = label == IGNORED
    num_ignored = np.bincount(argmax[ignored & (argmax >= 0)], minlength=m)[:m].astype(np.int64)
    lv = None if levels is None else np.asarray(levels, dtype=np.int64)
    if lv is not None and len(lv) != n:
        raise ValueError(f"levels has {len(lv)} entries for {n} anchors")
    best_level = np.full(m, -1, np.int64)
    if lv is not None:
        has = best_anchor >= 0
        best_level[has] = lv[best_anchor[has]]
    return Assignment(
        label=label,
        matched_gt=np.where(positive, matched, -1).astype(np.int64),
        max_iou=max_iou,
        argmax_gt=argmax,
        matched_iou=matched_iou,
        low_quality=low_quality,
        level=lv,
        num_positive=num_positive,
        num_ignored=num_ignored,
        best_iou=best,
        best_anchor=best_anchor,
        best_level=best_level,
        low_quality_only=(num_positive > 0) & (regular == 0),
        no_positive=num_positive == 0,
        threshold=np.full(m, np.nan, np.float32) if threshold is None else threshold.astype(np.float32),
        method=method,
        pos_thresh=float(pos_thresh),
        neg_thresh=float(neg_thresh),
    )


def assign_from_sparse(
    sp: SparseIoU,
    *,
    pos_thresh: float = 0.5,
    neg_thresh: float = 0.4,
    low_quality: bool = True,
    semantics: str = "torchvision",
    levels: np.ndarray | None = None,
) -> Assignment:
    """Max-IoU labeling from a sparse IoU; equal to torchvision's ``Matcher`` on the dense matrix.

    A GT that overlaps no anchor at all (best IoU 0) is handled as the frameworks do: with low-quality matches on,
    every anchor is tied at IoU 0 with it and gets promoted (torchvision: to its own argmax GT, GT 0 for anchors
    that overlap nothing; mmdet: to that GT). Filter degenerate boxes before labeling to avoid this.
    """
    _check_thresholds(pos_thresh, neg_thresh, semantics)
    n, m = sp.num_anchors, sp.num_gt
    max_iou, argmax = sp.anchor_max
    if m == 0:
        best = np.zeros(0, np.float32)
        best_anchor = np.zeros(0, np.int64)
        matched = np.full(n, BELOW_LOW_THRESHOLD, np.int64)
    else:
        best, best_anchor, tied = sp.gt_best
        internal_argmax = np.where(argmax >= 0, argmax, 0)  # torch's argmax of an all-zero column is 0
        matched = np.where(max_iou >= pos_thresh, internal_argmax, BELOW_LOW_THRESHOLD)
        matched[(max_iou >= neg_thresh) & (max_iou < pos_thresh)] = BETWEEN_THRESHOLDS
        if low_quality:
            hazard = np.nonzero(best == 0)[0]
            if semantics == "torchvision":
                if len(hazard):
                    matched[:] = internal_argmax  # every anchor ties at 0 with such a GT
                else:
                    rows = sp.anchor_idx[tied]
                    matched[rows] = internal_argmax[rows]
            else:
                lq = np.full(n, -1, np.int64)
                np.maximum.at(lq, sp.anchor_idx[tied], sp.gt_idx[tied])  # later GTs overwrite earlier ones
                if len(hazard):
                    # A GT with best IoU 0 ties at 0 with every anchor and claims all of them; a later GT wins.
                    lq = np.maximum(lq, hazard.max())
                hit = lq >= 0
                matched[hit] = lq[hit]
    return _finish(
        sp,
        matched,
        max_iou,
        argmax,
        best,
        best_anchor,
        pos_thresh=pos_thresh,
        neg_thresh=neg_thresh,
        levels=levels,
        method="max_iou",
    )


def assign_max_iou(
    anchors: np.ndarray,
    gt_boxes: np.ndarray,
    *,
    pos_thresh: float = 0.5,
    neg_thresh: float = 0.4,
    low_quality: bool = True,
    semantics: str = "torchvision",
    levels: np.ndarray | None = None,
    grids: Sequence[LevelGrid] | None = None,
) -> Assignment:
    """Max-IoU labeling of anchors against GT boxes (RetinaNet's rule).

    Args:
        anchors: (N, 4) float32 xyxy.
        gt_boxes: (M, 4) xyxy; M = 0 labels every anchor an easy negative.
        pos_thresh: IoU >= pos_thresh is positive (0.5).
        neg_thresh: IoU < neg_thresh is negative; [neg, pos) is ignored (0.4).
        low_quality: also make each GT's best anchors (ties included) positive.
        semantics: ``"torchvision"`` (promoted anchor keeps its own argmax GT) or ``"mmdet"``.
        levels: (N,) level index per anchor, for per-level results.
        grids: the anchor grid (:func:`explorer.anchors.grid.level_grids`) for the fast path; without it the IoU is
            computed densely in chunks (exact, slower).

    Returns:
        An :class:`Assignment`.
    """
    sp = sparse_iou(anchors, gt_boxes, grids)
    return assign_from_sparse(
        sp, pos_thresh=pos_thresh, neg_thresh=neg_thresh, low_quality=low_quality, semantics=semantics, levels=levels
    )


def _level_slices(levels: np.ndarray) -> list[tuple[int, int]]:
    lv = np.asarray(levels, dtype=np.int64)
    if len(lv) and (np.diff(lv) < 0).any():
        raise ValueError("levels must be sorted (anchors concatenated level by level)")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(lv))]) if len(lv) else np.array([0])
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]


def _atss_candidates_dense(centres: np.ndarray, gt_centres: np.ndarray, start: int, stop: int, k: int) -> np.ndarray:
    """(M, k) indices of the k anchors of [start, stop) closest to each GT centre (ties: lower index)."""
    m = len(gt_centres)
    out = np.empty((m, k), np.int64)
    c = centres[start:stop]
    step = max(1, _CHUNK_PAIRS // max(1, len(c)))
    for s in range(0, m, step):
        g = gt_centres[s : s + step]
        d = np.sqrt(((c[None, :, :] - g[:, None, :]) ** 2).sum(axis=2, dtype=np.float32))
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(c) else np.tile(np.arange(len(c)), (len(g), 1))
        dist = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, dist), axis=1)
        out[s : s + step] = np.take_along_axis(part, order, axis=1) + start
    return out


def _atss_candidates_grid(
    anchors: np.ndarray, gt_centres: np.ndarray, grid: LevelGrid, start: int, k: int
) -> np.ndarray:
    """Same as the dense version, visiting only a window of cells around each GT centre."""
    gh, gw = grid.grid_hw
    sh, sw = grid.stride_hw
    na = len(grid.cell_anchors)
    cells_needed = -(-k // na)
    aniso = max(sh, sw) / min(sh, sw)
    r = int(np.ceil(np.sqrt(cells_needed) * aniso)) + 1
    m = len(gt_centres)
    out = np.empty((m, k), np.int64)
    di, dj = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    di, dj = di.ravel(), dj.ravel()
    for g in range(m):
        gx, gy = gt_centres[g]
        i0, j0 = grid.nearest_cell(gx, gy)
        ii, jj = i0 + di, j0 + dj
        ok = (ii >= 0) & (ii < gh) & (jj >= 0) & (jj < gw)
        loc = ii[ok] * gw + jj[ok]
        idx = (start + loc[:, None] * na + np.arange(na)[None, :]).ravel()
        box = anchors[idx]
        cx = (box[:, 0] + box[:, 2]) / np.float32(2)
        cy = (box[:, 1] + box[:, 3]) / np.float32(2)
        d = np.sqrt((cx - gx) ** 2 + (cy - gy) ** 2)
        order = np.lexsort((idx, d))[:k]
        out[g] = idx[order]
    return out


def assign_atss(
    anchors: np.ndarray,
    gt_boxes: np.ndarray,
    levels: np.ndarray,
    *,
    topk: int = 9,
    grids: Sequence[LevelGrid] | None = None,
    sparse: SparseIoU | None = None,
) -> Assignment:
    """ATSS (Zhang et al. 2020), as mmdet's ``ATSSAssigner``.

    Per GT: on each level take the ``topk`` anchors whose centres are closest to the GT centre (all of the level
    if it has fewer); threshold = mean + unbiased std of their IoUs; positives are candidates with IoU >= threshold
    and a centre strictly inside the GT (min distance to the sides > 0.01). An anchor claimed by several GTs keeps
    the one with the highest IoU. There is no ignore band: non-positives are hard or easy negatives.

    Args:
        anchors: (N, 4) float32 xyxy, concatenated level by level.
        gt_boxes: (M, 4) xyxy.
        levels: (N,) int64 level index per anchor (sorted).
        topk: candidates per level per GT (9).
        grids: the anchor grid for the fast paths (optional).
        sparse: a precomputed :class:`SparseIoU` for the same anchors and GTs (optional).

    Returns:
        An :class:`Assignment` with ``method="atss"`` and the per-GT ``threshold``.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    anchors = _as_boxes(anchors, "anchors")
    gt = _as_boxes(gt_boxes, "gt_boxes")
    n, m = len(anchors), len(gt)
    sp = sparse if sparse is not None else sparse_iou(anchors, gt, grids)
    max_iou, argmax = sp.anchor_max
    if m == 0:
        best, best_anchor = np.zeros(0, np.float32), np.zeros(0, np.int64)
        matched = np.full(n, BELOW_LOW_THRESHOLD, np.int64)
        return _finish(
            sp, matched, max_iou, argmax, best, best_anchor, pos_thresh=0.0, neg_thresh=0.0, levels=levels,
            method="atss", threshold=np.zeros(0, np.float32),
        )  # fmt: skip
    best, best_anchor, _ = sp.gt_best
    gt_centres = np.stack([(gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2], axis=1).astype(np.float32)
    slices = _level_slices(levels)
    if grids is not None and len(grids) != len(slices):
        raise ValueError(f"{len(grids)} grids for {len(slices)} levels")
    cand_parts = []
    centres = None
    for li, (s, e) in enumerate(slices):
        k = min(topk, e - s)
        if grids is not None and k <= len(grids[li].cell_anchors) * grids[li].grid_hw[0] * grids[li].grid_hw[1]:
            cand_parts.append(_atss_candidates_grid(anchors, gt_centres, grids[li], s, k))
        else:
            if centres is None:
                centres = np.stack(
                    [(anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2], axis=1
                ).astype(np.float32)
            cand_parts.append(_atss_candidates_dense(centres, gt_centres, s, e, k))
    cand = np.concatenate(cand_parts, axis=1)  # (M, C)
    g_rep = np.repeat(np.arange(m), cand.shape[1])
    cand_flat = cand.ravel()
    cand_iou = _iou_pairs(anchors[cand_flat], gt[g_rep]).reshape(m, -1)
    mean = cand_iou.mean(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = cand_iou.std(axis=1, ddof=1, dtype=np.float64) if cand.shape[1] > 1 else np.full(m, np.nan)
    thr = (mean + std).astype(np.float32)
    box = anchors[cand_flat]
    cx = ((box[:, 0] + box[:, 2]) / np.float32(2)).reshape(m, -1)
    cy = ((box[:, 1] + box[:, 3]) / np.float32(2)).reshape(m, -1)
    inside = np.minimum.reduce([cx - gt[:, 0:1], cy - gt[:, 1:2], gt[:, 2:3] - cx, gt[:, 3:4] - cy]) > np.float32(0.01)
    is_pos = (cand_iou >= thr[:, None]) & inside
    pos_a = cand[is_pos]
    pos_g = np.nonzero(is_pos)[0]
    pos_iou = cand_iou[is_pos]
    # Highest IoU wins; ties go to the lowest GT index (torch max returns the first).
    order = np.lexsort((pos_g, -pos_iou, pos_a))
    pos_a, pos_g = pos_a[order], pos_g[order]
    first = np.ones(len(pos_a), bool)
    first[1:] = pos_a[1:] != pos_a[:-1]
    matched = np.full(n, BELOW_LOW_THRESHOLD, np.int64)
    matched[pos_a[first]] = pos_g[first]
    return _finish(
        sp, matched, max_iou, argmax, best, best_anchor, pos_thresh=0.0, neg_thresh=0.0, levels=levels,
        method="atss", threshold=thr,
    )  # fmt: skip


def best_possible_recall(best_iou: np.ndarray, pos_thresh: float = 0.5) -> float:
    """Share of GTs with at least one anchor at IoU >= pos_thresh (NaN when there are no GTs)."""
    b = np.asarray(best_iou)
    return float((b >= pos_thresh).mean()) if len(b) else float("nan")


def threshold_sweep(
    sp: SparseIoU,
    pos_thresholds: Sequence[float] = tuple(np.round(np.arange(0.3, 0.701, 0.05), 2)),
    *,
    neg_thresh: float = 0.4,
    low_quality: bool = True,
    semantics: str = "torchvision",
) -> dict[str, np.ndarray]:
    """Max-IoU labeling for a range of positive thresholds (the negative threshold is capped at each one).

    Returns:
        Dict of (T,) arrays: ``pos_thresh``, ``neg_thresh``, ``mean_pos_per_gt``, ``median_pos_per_gt``,
        ``unmatched_gt`` (GTs with no positive), ``low_quality_only_gt``, ``num_positive``, ``num_ignored``,
        ``best_possible_recall``; and ``pos_per_gt`` (T, M) positives of each GT.
    """
    rows: dict[str, list] = {
        k: []
        for k in (
            "pos_thresh",
            "neg_thresh",
            "mean_pos_per_gt",
            "median_pos_per_gt",
            "unmatched_gt",
            "low_quality_only_gt",
            "num_positive",
            "num_ignored",
            "best_possible_recall",
            "pos_per_gt",
        )
    }
    for t in pos_thresholds:
        neg = min(neg_thresh, float(t))
        a = assign_from_sparse(sp, pos_thresh=float(t), neg_thresh=neg, low_quality=low_quality, semantics=semantics)
        counts = a.label_counts()
        rows["pos_thresh"].append(float(t))
        rows["neg_thresh"].append(neg)
        rows["mean_pos_per_gt"].append(float(a.num_positive.mean()) if a.num_gt else np.nan)
        rows["median_pos_per_gt"].append(float(np.median(a.num_positive)) if a.num_gt else np.nan)
        rows["unmatched_gt"].append(int(a.no_positive.sum()))
        rows["low_quality_only_gt"].append(int(a.low_quality_only.sum()))
        rows["num_positive"].append(counts["positive"])
        rows["num_ignored"].append(counts["ignored"])
        rows["best_possible_recall"].append(best_possible_recall(a.best_iou, float(t)))
        rows["pos_per_gt"].append(a.num_positive)
    out = {k: np.asarray(v) for k, v in rows.items() if k != "pos_per_gt"}
    out["pos_per_gt"] = np.stack(rows["pos_per_gt"]) if rows["pos_per_gt"] else np.zeros((0, sp.num_gt))
    return out


def per_level_counts(assignment: Assignment, num_levels: int) -> dict[str, np.ndarray]:
    """Anchors per level and label: dict of (L,) int64 arrays ``anchors``, ``positive``, ``ignored``,
    ``hard negative``, ``easy negative``."""
    if assignment.level is None:
        raise ValueError("the assignment has no per-anchor levels; pass levels= when assigning")
    lv = assignment.level
    out = {"anchors": np.bincount(lv, minlength=num_levels)[:num_levels].astype(np.int64)}
    for code in (POSITIVE, IGNORED, HARD_NEGATIVE, EASY_NEGATIVE):
        out[LABEL_NAMES[code]] = np.bincount(lv[assignment.label == code], minlength=num_levels)[:num_levels]
    return out
