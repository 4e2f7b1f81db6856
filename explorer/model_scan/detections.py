"""One image's detections against its labels: TP / FP / FN at a score, and the likely label problems.

Detections are torchvision's postprocessing (score > 0.05, NMS 0.5, top 300 per image), matched greedily by score,
each box once, same class, IoU >= 0.5, crowd regions ignored as COCOeval ignores them
(:func:`explorer.detection.evaluation.match_detections`). Likely label problems, each a row to rank and look at:

- ``missing_label``: a confident detection (score >= ``score_thresh``) that overlaps no box of any class at IoU >= 0.5
  and no crowd region: the object may be unlabelled.
- ``not_found``: a box that no detection of its class finds at that score: a wrong box, or a very hard object.
- ``class_confusion``: a box without a same-class detection but with a confident detection of another class at
  IoU >= 0.5: a wrong class, or a confusing one.
"""

from __future__ import annotations

import numpy as np

from explorer.boxes import box_iou
from explorer.detection.evaluation import match_detections
from explorer.detection.outputs import Detections, filter_detections

#: IoU of a match (COCO's AP50 rule).
MATCH_IOU = 0.5
PROBLEM_KINDS: tuple[str, ...] = ("missing_label", "not_found", "class_confusion")


def detection_row(
    dets: Detections,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    crowd_boxes: np.ndarray,
    crowd_labels: np.ndarray,
    *,
    score_thresh: float,
) -> tuple[dict[str, float], list[dict]]:
    """``(columns, problems)`` of one image.

    Args:
        dets: the final detections in original-image pixels.
        gt_boxes, gt_labels: (M, 4) non-crowd boxes and (M,) label ids; crowd_boxes, crowd_labels: crowd regions.
        score_thresh: the score at which detections count (TP / FP) and are confident (problems).

    Returns:
        Columns ``detections`` (all, score > 0.05), ``tp``, ``fp``, ``fn``, ``on_crowd`` at ``score_thresh``; and
        one dict per likely problem: ``kind`` (:data:`PROBLEM_KINDS`), ``x1, y1, x2, y2`` (original pixels),
        ``label`` (the box's or the detection's), ``other_label`` (the confused class, else -1), ``score`` (the
        detection's; for ``not_found`` the best same-class score at IoU >= 0.5 below the threshold, else 0), ``iou``.
    """
    shown = filter_detections(dets, score_thresh=score_thresh)
    m = match_detections(
        shown, gt_boxes, gt_labels, iou_thresh=MATCH_IOU, crowd_boxes=crowd_boxes, crowd_labels=crowd_labels
    )
    row = {
        "detections": len(dets),
        "tp": int(m.is_tp.sum()),
        "fp": int(m.is_fp.sum()),
        "fn": int(m.missed.sum()),
        "on_crowd": int(m.on_crowd.sum()) if m.on_crowd is not None else 0,
    }
    return row, _problems(dets, shown, m.is_fp, m.missed, gt_boxes, gt_labels)


def _problems(
    dets: Detections, shown: Detections, is_fp: np.ndarray, missed: np.ndarray, gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
) -> list[dict]:  # fmt: skip
    out: list[dict] = []
    iou = box_iou(shown.boxes, gt_boxes) if len(shown) and len(gt_boxes) else np.zeros((len(shown), len(gt_boxes)))
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(shown))
    for i in np.flatnonzero(is_fp & (best < MATCH_IOU)):
        out.append(_row("missing_label", shown.boxes[i], int(shown.labels[i]), -1, shown.scores[i], best[i]))
    all_iou = box_iou(dets.boxes, gt_boxes) if len(dets) and len(gt_boxes) else np.zeros((len(dets), len(gt_boxes)))
    for j in np.flatnonzero(missed):
        same = (dets.labels == gt_labels[j]) & (all_iou[:, j] >= MATCH_IOU)
        other = (shown.labels != gt_labels[j]) & (iou[:, j] >= MATCH_IOU) if len(shown) else np.zeros(0, bool)
        if other.any():
            k = int(np.flatnonzero(other)[np.argmax(shown.scores[other])])
            out.append(
                _row("class_confusion", gt_boxes[j], int(gt_labels[j]), int(shown.labels[k]), shown.scores[k],
                     iou[k, j])
            )  # fmt: skip
        else:
            score = float(dets.scores[same].max()) if same.any() else 0.0
            out.append(
                _row("not_found", gt_boxes[j], int(gt_labels[j]), -1, score, float(all_iou[:, j].max(initial=0)))
            )
    return out


def _row(kind: str, box: np.ndarray, label: int, other: int, score: float, iou: float) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "kind": kind, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "label": label, "other_label": other,
        "score": float(score), "iou": float(iou),
    }  # fmt: skip
