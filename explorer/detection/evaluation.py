"""A detector's output against ground truth: true positives, false positives and missed objects.

:func:`match_detections` matches greedily by score, each GT at most once, same label, IoU >= 0.5 (as COCO evaluation
does); the Live detections page colours boxes by the result.

Example:
    >>> import numpy as np
    >>> from explorer.detection.outputs import Detections
    >>> dets = Detections(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.array([0.9, 0.8], np.float32),
    ...                   np.array([1, 1]), np.array([0, 0]))
    >>> m = match_detections(dets, np.array([[0, 0, 10, 11]], np.float32), np.array([1]))
    >>> m.is_tp.tolist(), m.missed.tolist()
    ([True, False], [False])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.boxes import area, box_iou, intersection
from explorer.detection.outputs import Detections


def gt_arrays(gt_boxes: np.ndarray, gt_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth as (M, 4) float32 xyxy boxes and (M,) int64 labels; a ValueError when the counts differ."""
    boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(gt_labels, np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"gt_boxes has {len(boxes)} rows but gt_labels has {len(labels)}")
    return boxes, labels


@dataclass
class Matching:
    """Detections matched to GT at one IoU threshold (greedy by score, same label, as COCO evaluation does).

    Attributes:
        is_tp: (D,) bool, detection matched a GT of its label.
        matched_gt: (D,) int64 GT index or -1.
        iou: (D,) float32 IoU with the matched GT (0 if none).
        missed: (M,) bool, GT not matched by any detection.
        on_crowd: (D,) bool, unmatched but inside a crowd region of its label: neither TP nor FP (COCOeval ignores
            it).
    """

    is_tp: np.ndarray
    matched_gt: np.ndarray
    iou: np.ndarray
    missed: np.ndarray
    on_crowd: np.ndarray | None = None

    @property
    def is_fp(self) -> np.ndarray:
        """(D,) bool: neither matched nor on a crowd region."""
        return ~self.is_tp if self.on_crowd is None else ~self.is_tp & ~self.on_crowd

    def counts(self) -> dict[str, int]:
        out = {
            "true positives": int(self.is_tp.sum()),
            "false positives": int(self.is_fp.sum()),
            "missed": int(self.missed.sum()),
        }
        if self.on_crowd is not None:
            out["on crowd (ignored)"] = int(self.on_crowd.sum())
        return out


def match_detections(
    dets: Detections,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    *,
    iou_thresh: float = 0.5,
    crowd_boxes: np.ndarray | None = None,
    crowd_labels: np.ndarray | None = None,
) -> Matching:
    """Match detections to ground truth: highest score first, each GT at most once, same label, IoU >= thresh.

    Args:
        dets: detections in original-image pixels.
        gt_boxes: (M, 4) xyxy; gt_labels: (M,) label ids.
        iou_thresh: IoU for a match (0.5).
        crowd_boxes, crowd_labels: (C, 4) crowd regions and (C,) labels. A detection left unmatched whose overlap
            with a crowd region of its label, ``intersection / detection area`` (COCOeval's IoU for crowd GT), is
            at least ``iou_thresh`` is marked :attr:`Matching.on_crowd`, not a false positive.
    """
    boxes, labels = gt_arrays(gt_boxes, gt_labels)
    d = len(dets)
    is_tp = np.zeros(d, bool)
    matched = np.full(d, -1, np.int64)
    ious = np.zeros(d, np.float32)
    taken = np.zeros(len(boxes), bool)
    if d and len(boxes):
        iou = box_iou(dets.boxes, boxes)
        iou[dets.labels[:, None] != labels[None, :]] = -1.0
        for i in np.argsort(-dets.scores, kind="stable"):
            row = np.where(taken, -1.0, iou[i])
            j = int(row.argmax())
            if row[j] >= iou_thresh:
                taken[j] = True
                is_tp[i], matched[i], ious[i] = True, j, row[j]
    if crowd_boxes is None:
        return Matching(is_tp, matched, ious, ~taken)
    crowd, crowd_lab = gt_arrays(crowd_boxes, crowd_labels if crowd_labels is not None else [])
    on_crowd = np.zeros(d, bool)
    if d and len(crowd):
        inter = intersection(dets.boxes[:, None, :], crowd[None, :, :])
        det_area = area(dets.boxes[:, 0], dets.boxes[:, 1], dets.boxes[:, 2], dets.boxes[:, 3])
        with np.errstate(invalid="ignore", divide="ignore"):
            cover = inter / det_area[:, None]
        cover[dets.labels[:, None] != crowd_lab[None, :]] = -1.0
        on_crowd = ~is_tp & (cover >= iou_thresh).any(axis=1)
    return Matching(is_tp, matched, ious, ~taken, on_crowd)
