"""Statistics over assignments: best possible recall, the positive-threshold sweep and per-level label counts.

Example:
    >>> best_possible_recall(np.array([0.7, 0.45, 0.52]), 0.5)
    0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.anchors.assignment import Assignment
from explorer.anchors.iou import SparseIoU
from explorer.anchors.max_iou import assign_from_sparse
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, LABEL_NAMES, POSITIVE


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
