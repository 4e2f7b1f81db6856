"""What the prediction-aware assigners (:mod:`~explorer.anchors.tal`, :mod:`~explorer.anchors.simota`) share: the
checks on their inputs and the step from their decision to an :class:`~explorer.anchors.assignment.Assignment`.

They label anchors from the model's output, not from the anchors alone: per anchor, class probabilities (after the
sigmoid) and the decoded predicted box. Their positives are :data:`POSITIVE`; there is no ignore band, so every
other anchor is a negative, hard or easy by its anchor's max IoU with the GTs, as for ATSS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from explorer.anchors.assignment import Assignment, build_assignment
from explorer.anchors.grid import LevelGrid
from explorer.anchors.iou import SparseIoU, sparse_iou
from explorer.boxes import as_boxes


def check_predictions(
    anchors: Any, gt_boxes: Any, gt_labels: Any, scores: Any, decoded: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inputs of a prediction-aware assigner as arrays, or ``ValueError`` naming the bad one.

    Args:
        anchors: (N, 4) xyxy.
        gt_boxes: (M, 4) xyxy.
        gt_labels: (M,) class indices in [0, C).
        scores: (N, C) class probabilities in [0, 1] (after the sigmoid).
        decoded: (N, 4) xyxy decoded predicted boxes.

    Returns:
        anchors (N, 4) float32, gt (M, 4) float32, labels (M,) int64, scores (N, C) float32, decoded (N, 4) float32.
    """
    a = as_boxes(anchors, "anchors")
    gt = as_boxes(gt_boxes, "gt_boxes")
    pred = as_boxes(decoded, "decoded")
    n, m = len(a), len(gt)
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2 or s.shape[0] != n or s.shape[1] < 1:
        raise ValueError(f"scores must have shape (N={n}, C>=1), got {s.shape}")
    if not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
        raise ValueError("scores must be probabilities in [0, 1] (apply the sigmoid first)")
    if len(pred) != n:
        raise ValueError(f"decoded has {len(pred)} boxes for {n} anchors")
    raw = np.asarray(gt_labels).reshape(-1)
    if len(raw) != m:
        raise ValueError(f"gt_labels has {len(raw)} entries for {m} GT boxes")
    labels = raw.astype(np.int64)
    if m and (not np.array_equal(labels, raw) or labels.min() < 0 or labels.max() >= s.shape[1]):
        raise ValueError(f"gt_labels must be class indices in [0, {s.shape[1]}), got {raw.tolist()[:10]}")
    return a, gt, labels, np.ascontiguousarray(s), pred


def finish_assignment(
    anchors: np.ndarray,
    gt: np.ndarray,
    matched: np.ndarray,
    *,
    method: str,
    levels: np.ndarray | None,
    grids: Sequence[LevelGrid] | None,
    sparse: SparseIoU | None,
    **extras: np.ndarray | None,
) -> Assignment:
    """The :class:`Assignment` of a decision: ``matched`` (N,) int64 is a GT index for positives and -1 elsewhere.

    The anchors' IoU with the GTs (``sparse``, or computed here, on the grid when ``grids`` is given) gives the
    hard/easy split of the negatives, ``matched_iou`` and the per-GT best anchors, as for max-IoU and ATSS.
    """
    n, m = len(anchors), len(gt)
    sp = sparse if sparse is not None else sparse_iou(anchors, gt, grids)
    if (sp.num_anchors, sp.num_gt) != (n, m):
        raise ValueError(f"sparse IoU is for {sp.num_anchors} anchors x {sp.num_gt} GTs, not {n} x {m}")
    max_iou, argmax = sp.anchor_max
    if m == 0:
        best, best_anchor = np.zeros(0, np.float32), np.zeros(0, np.int64)
    else:
        best, best_anchor, _ = sp.gt_best
    return build_assignment(
        sp, matched, max_iou, argmax, best, best_anchor, pos_thresh=0.0, neg_thresh=0.0, levels=levels,
        method=method, **extras,
    )  # fmt: skip
