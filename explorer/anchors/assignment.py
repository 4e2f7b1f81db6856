"""The one result type of every assigner (max-IoU, ATSS, TAL, SimOTA): per-anchor labels and per-GT counts, as
mmdet's ``AssignResult``.

Labels per anchor (int8, :mod:`explorer.labels`): :data:`EASY_NEGATIVE` (max IoU exactly 0), :data:`HARD_NEGATIVE`
(0 < max IoU < neg threshold), :data:`IGNORED` (the band between thresholds) and :data:`POSITIVE`. An assigner
decides the matched GT of every anchor (torchvision's codes: a GT index, :data:`BELOW_LOW_THRESHOLD` or
:data:`BETWEEN_THRESHOLDS`) and :func:`build_assignment` turns that into an :class:`Assignment`. The
prediction-aware assigners (TAL, SimOTA) have no ignore band and add per-anchor soft targets, metrics and
predicted-box IoUs (None for max-IoU and ATSS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.anchors.iou import SparseIoU
from explorer.labels import BETWEEN_THRESHOLDS, EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, LABEL_NAMES, POSITIVE


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
        threshold: float32 ATSS IoU threshold (mean + std) per GT, NaN for the other assigners.
        dynamic_k: int64 SimOTA's dynamic k per GT, or None.
    Per anchor, prediction-aware assigners only (None otherwise), 0 where not positive:
        soft_target: float32 classification target of the matched class (TAL's normalized metric, SimOTA/YOLOX's
            predicted-box IoU).
        assign_metric: float32 TAL's alignment metric s**alpha * u**beta with the matched GT.
        pred_iou: float32 overlap of the decoded predicted box with the matched GT (IoU; CIoU for Ultralytics).
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
    soft_target: np.ndarray | None = None
    assign_metric: np.ndarray | None = None
    pred_iou: np.ndarray | None = None
    dynamic_k: np.ndarray | None = None

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


_EXTRAS = frozenset({"soft_target", "assign_metric", "pred_iou", "dynamic_k"})


def _matched_iou(sp: SparseIoU, matched: np.ndarray, max_iou: np.ndarray, argmax: np.ndarray) -> np.ndarray:
    """(N,) float32 IoU with the matched GT: equal to max_iou unless the matched GT is not the argmax (mmdet low
    quality, ATSS), 0 when not positive."""
    positive = matched >= 0
    matched_iou = np.where(positive, max_iou, 0).astype(np.float32)
    off = positive & (matched != argmax)
    if off.any():
        matched_iou[off] = 0
        pair_hit = off[sp.anchor_idx] & (sp.gt_idx == matched[sp.anchor_idx])
        matched_iou[sp.anchor_idx[pair_hit]] = sp.iou[pair_hit]
    return matched_iou


def _levels(levels: np.ndarray | None, n: int, m: int, best_anchor: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Per-anchor levels (N,) int64 or None, and the level of each GT's best anchor (M,) (-1 if unknown)."""
    lv = None if levels is None else np.asarray(levels, dtype=np.int64)
    if lv is not None and len(lv) != n:
        raise ValueError(f"levels has {len(lv)} entries for {n} anchors")
    best_level = np.full(m, -1, np.int64)
    if lv is not None:
        has = best_anchor >= 0
        best_level[has] = lv[best_anchor[has]]
    return lv, best_level


def build_assignment(
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
    **extras: np.ndarray | None,
) -> Assignment:
    """The :class:`Assignment` of an assigner's decision.

    Args:
        sp: the sparse IoU the decision was made on.
        matched: (N,) int64 torchvision codes: GT index, :data:`BELOW_LOW_THRESHOLD` or :data:`BETWEEN_THRESHOLDS`.
        max_iou, argmax: per-anchor max IoU and argmax GT (:attr:`SparseIoU.anchor_max`).
        best, best_anchor: per-GT best IoU and best anchor (:attr:`SparseIoU.gt_best`).
        pos_thresh, neg_thresh: the thresholds (a max-IoU positive below ``pos_thresh`` is low quality).
        levels: (N,) level index per anchor, or None.
        method: ``"max_iou"``, ``"atss"``, ``"tal_mmdet"``, ``"tal_ultralytics"`` or ``"simota"`` (only max-IoU
            has a low-quality rule).
        threshold: (M,) per-GT IoU threshold (ATSS); None gives NaN.
        extras: the optional fields of the prediction-aware assigners (``soft_target``, ``assign_metric``,
            ``pred_iou``, ``dynamic_k``).
    """
    unknown = set(extras) - _EXTRAS
    if unknown:
        raise TypeError(f"unknown Assignment fields {sorted(unknown)}")
    n, m = sp.num_anchors, sp.num_gt
    positive = matched >= 0
    label = np.where(max_iou > 0, HARD_NEGATIVE, EASY_NEGATIVE).astype(np.int8)
    label[matched == BETWEEN_THRESHOLDS] = IGNORED
    label[positive] = POSITIVE
    matched_iou = _matched_iou(sp, matched, max_iou, argmax)
    if method == "max_iou":
        low_quality = positive & ((max_iou < pos_thresh) | (matched != argmax))
    else:
        low_quality = np.zeros(n, bool)
    matched_pos = matched[positive]
    num_positive = np.bincount(matched_pos, minlength=m)[:m].astype(np.int64)
    regular = np.bincount(matched[positive & ~low_quality], minlength=m)[:m]
    ignored = label == IGNORED
    num_ignored = np.bincount(argmax[ignored & (argmax >= 0)], minlength=m)[:m].astype(np.int64)
    lv, best_level = _levels(levels, n, m, best_anchor)
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
        **extras,
    )
