"""Max-IoU labeling (RetinaNet's rule) with torchvision's or mmdet's low-quality semantics.

:func:`match_iou_matrix` is the dense reference (torchvision's ``Matcher`` on an (M, N) matrix);
:func:`assign_from_sparse` gives the same decisions from a :class:`~explorer.anchors.iou.SparseIoU` and returns an
:class:`~explorer.anchors.assignment.Assignment`; :func:`assign_max_iou` runs both steps from boxes.

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

import numpy as np

from explorer.anchors.assignment import Assignment, build_assignment
from explorer.anchors.grid import LevelGrid
from explorer.anchors.iou import SparseIoU, sparse_iou
from explorer.labels import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS

SEMANTICS: tuple[str, ...] = ("torchvision", "mmdet")


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
    return build_assignment(
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
