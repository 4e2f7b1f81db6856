"""ATSS (Zhang et al. 2020, "Bridging the Gap Between Anchor-based and Anchor-free Detection"), as mmdet's
``ATSSAssigner``: per GT, the IoU threshold adapts to the statistics of its nearest anchors.

Per GT: on each level take the ``topk`` anchors whose centres are closest to the GT centre (all of the level if it
has fewer); threshold = mean + unbiased std of their IoUs; positives are candidates with IoU >= threshold and a
centre strictly inside the GT. The nearest anchors are found densely per level, or, with the anchor grid, in a
window of cells around each GT centre (same result).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.anchors.assignment import Assignment, build_assignment
from explorer.anchors.grid import LevelGrid
from explorer.anchors.iou import SparseIoU, sparse_iou
from explorer.boxes import CHUNK_PAIRS, as_boxes, box_centres, iou_pairs
from explorer.labels import BELOW_LOW_THRESHOLD


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
    step = max(1, CHUNK_PAIRS // max(1, len(c)))
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


def _candidates(
    anchors: np.ndarray, gt_centres: np.ndarray, levels: np.ndarray, grids: Sequence[LevelGrid] | None, topk: int
) -> np.ndarray:
    """(M, C) candidate anchors of every GT: the ``topk`` nearest of each level (all of a smaller level)."""
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
                centres = box_centres(anchors)
            cand_parts.append(_atss_candidates_dense(centres, gt_centres, s, e, k))
    return np.concatenate(cand_parts, axis=1)


def _threshold(cand_iou: np.ndarray) -> np.ndarray:
    """(M,) float32 IoU threshold per GT: mean + unbiased std of its candidates' IoUs (NaN std for one candidate)."""
    m = len(cand_iou)
    mean = cand_iou.mean(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = cand_iou.std(axis=1, ddof=1, dtype=np.float64) if cand_iou.shape[1] > 1 else np.full(m, np.nan)
    return (mean + std).astype(np.float32)


def _match(anchors: np.ndarray, gt: np.ndarray, cand: np.ndarray, cand_iou: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """(N,) int64 matched GT per anchor (:data:`BELOW_LOW_THRESHOLD` if none): candidates at or above their GT's
    threshold whose centre is inside the GT (min distance to the sides > 0.01); the highest IoU wins."""
    m = len(gt)
    box = anchors[cand.ravel()]
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
    matched = np.full(len(anchors), BELOW_LOW_THRESHOLD, np.int64)
    matched[pos_a[first]] = pos_g[first]
    return matched


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
    anchors = as_boxes(anchors, "anchors")
    gt = as_boxes(gt_boxes, "gt_boxes")
    n, m = len(anchors), len(gt)
    sp = sparse if sparse is not None else sparse_iou(anchors, gt, grids)
    max_iou, argmax = sp.anchor_max
    if m == 0:
        best, best_anchor = np.zeros(0, np.float32), np.zeros(0, np.int64)
        matched = np.full(n, BELOW_LOW_THRESHOLD, np.int64)
        return build_assignment(
            sp, matched, max_iou, argmax, best, best_anchor, pos_thresh=0.0, neg_thresh=0.0, levels=levels,
            method="atss", threshold=np.zeros(0, np.float32),
        )  # fmt: skip
    best, best_anchor, _ = sp.gt_best
    cand = _candidates(anchors, box_centres(gt), levels, grids, topk)  # (M, C)
    g_rep = np.repeat(np.arange(m), cand.shape[1])
    cand_iou = iou_pairs(anchors[cand.ravel()], gt[g_rep]).reshape(m, -1)
    thr = _threshold(cand_iou)
    matched = _match(anchors, gt, cand, cand_iou, thr)
    return build_assignment(
        sp, matched, max_iou, argmax, best, best_anchor, pos_thresh=0.0, neg_thresh=0.0, levels=levels,
        method="atss", threshold=thr,
    )  # fmt: skip
