"""Per-anchor loss maps: how one image's classification loss splits over easy negatives, hard negatives and
positives, from the model's real dense outputs (:class:`explorer.detection.outputs.DenseOutputs`).

Every anchor is labelled by max-IoU assignment (``explorer.anchors.max_iou``: easy negative = overlaps no GT, hard
negative = 0 < IoU < 0.4, ignored = [0.4, 0.5), positive = IoU >= 0.5 or a GT's best anchor) against the GT scaled
to the network input exactly as torchvision scales it, its classification target is built as torchvision's RetinaNet
builds it (one-hot at the matched GT's label for positives, all zeros for negatives, ignored anchors left out), and
the loss is summed over classes per anchor. The share of the image's loss that each group carries then shows why
focal loss exists: under CE the easy negatives dominate, under FL the positives do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from explorer.anchors.assignment import Assignment
from explorer.anchors.max_iou import assign_max_iou
from explorer.boxes import box_iou
from explorer.detection.evaluation import gt_arrays
from explorer.detection.outputs import DenseOutputs
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, LABEL_NAMES, POSITIVE
from explorer.losses.classification import ce_loss, focal_loss
from explorer.losses.soft_targets import qfl_loss

LOSS_KINDS: dict[str, str] = {"ce": "CE", "focal": "Focal", "qfl": "QFL"}
#: Groups in display order; ignored anchors are shown but excluded from the loss, as in torchvision.
GROUPS: tuple[int, ...] = (EASY_NEGATIVE, HARD_NEGATIVE, POSITIVE, IGNORED)
COUNTED_GROUPS: tuple[int, ...] = (EASY_NEGATIVE, HARD_NEGATIVE, POSITIVE)


@dataclass
class LossBreakdown:
    """Per-anchor classification losses of one image against its ground truth.

    Attributes:
        assignment: the max-IoU assignment of the dense anchors (input-pixel coordinates).
        group: (N,) int8 label per anchor (``explorer.labels`` codes).
        per_anchor: loss kind -> (N,) float32 loss summed over classes (ignored anchors: the loss they would have
            as negatives; they are excluded from shares and totals).
        normalizer: max(1, number of positive anchors), torchvision's per-image normalizer.
        alpha, gamma, qfl_beta: the loss parameters used.
    """

    assignment: Assignment
    group: np.ndarray
    per_anchor: dict[str, np.ndarray]
    normalizer: float
    alpha: float
    gamma: float
    qfl_beta: float

    def shares(self) -> pd.DataFrame:
        """One row per group: anchors, then per loss kind its sum and its share of the image's counted loss.

        The shares of the counted groups (easy negatives, hard negatives, positives) sum to 1 for every loss;
        ignored anchors get an empty share.
        """
        rows = []
        counted = np.isin(self.group, COUNTED_GROUPS)
        totals = {k: float(v[counted].sum(dtype=np.float64)) for k, v in self.per_anchor.items()}
        for g in GROUPS:
            mask = self.group == g
            row: dict[str, object] = {"group": LABEL_NAMES[g], "anchors": int(mask.sum())}
            for kind, values in self.per_anchor.items():
                s = float(values[mask].sum(dtype=np.float64))
                row[f"{LOSS_KINDS[kind]} loss"] = s
                if g == IGNORED:
                    row[f"{LOSS_KINDS[kind]} share"] = np.nan
                else:
                    row[f"{LOSS_KINDS[kind]} share"] = s / totals[kind] if totals[kind] > 0 else 0.0
            rows.append(row)
        return pd.DataFrame(rows)

    def totals(self) -> dict[str, float]:
        """Normalized image loss per kind: counted sum / max(1, positives) (torchvision's per-image value)."""
        counted = np.isin(self.group, COUNTED_GROUPS)
        return {k: float(v[counted].sum(dtype=np.float64)) / self.normalizer for k, v in self.per_anchor.items()}


def loss_breakdown(
    dense: DenseOutputs,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    qfl_beta: float = 2.0,
    pos_thresh: float = 0.5,
    neg_thresh: float = 0.4,
) -> LossBreakdown:
    """Per-anchor CE, focal (any alpha, gamma) and QFL losses from the model's dense outputs and the GT.

    Args:
        dense: the model's dense outputs for the image.
        gt_boxes: (M, 4) xyxy in original-image pixels; gt_labels: (M,) label ids (logit indices).
        alpha: focal alpha (-1 disables); gamma: focal gamma; qfl_beta: QFL exponent.
        pos_thresh, neg_thresh: the assignment's IoU thresholds (0.5 / 0.4).

    Returns:
        A :class:`LossBreakdown`. QFL uses the IoU of the anchor's decoded box with its matched GT as the soft
        target of positives (GFL's quality target), 0 elsewhere.

    Raises:
        ValueError: a GT label outside the model's classes, or mismatched GT arrays.
    """
    boxes, labels = gt_arrays(gt_boxes, gt_labels)
    num_classes = dense.cls_logits.shape[1]
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise ValueError(
            f"ground-truth label {bad} is outside the model's {num_classes} classes (0..{num_classes - 1})"
        )
    anchors = dense.anchors.numpy()
    gt_input = dense.to_input(boxes)
    assignment = assign_max_iou(
        anchors, gt_input, pos_thresh=pos_thresh, neg_thresh=neg_thresh, levels=dense.levels.numpy()
    )
    group = assignment.label.astype(np.int8)
    pos = np.nonzero(group == POSITIVE)[0]
    logits = dense.cls_logits.double()
    targets = torch.zeros_like(logits)
    soft = torch.zeros_like(logits)
    if len(pos):
        gt_idx = assignment.matched_gt[pos]
        pos_t = torch.from_numpy(pos)
        cls_t = torch.from_numpy(labels[gt_idx])
        targets[pos_t, cls_t] = 1.0
        pred = dense.decoded_boxes()[pos_t].numpy()
        quality = np.clip(np.diag(box_iou(pred, gt_input[gt_idx])), 0.0, 1.0)
        soft[pos_t, cls_t] = torch.from_numpy(quality.astype(np.float64))
    per_anchor = {
        "ce": ce_loss(logits, targets).sum(dim=1),
        "focal": focal_loss(logits, targets, alpha=alpha, gamma=gamma).sum(dim=1),
        "qfl": qfl_loss(logits, soft, beta=qfl_beta).sum(dim=1),
    }
    return LossBreakdown(
        assignment=assignment,
        group=group,
        per_anchor={k: v.numpy().astype(np.float32) for k, v in per_anchor.items()},
        normalizer=float(max(1, len(pos))),
        alpha=alpha,
        gamma=gamma,
        qfl_beta=qfl_beta,
    )


def level_loss_maps(dense: DenseOutputs, breakdown: LossBreakdown, kind: str) -> list[dict[str, np.ndarray]]:
    """Per level and group, the loss summed over the anchors of each grid cell.

    Returns:
        For each level, group name -> (gh, gw) float32 map (zero where the cell has no anchor of that group).
    """
    if kind not in breakdown.per_anchor:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {tuple(breakdown.per_anchor)}")
    values = breakdown.per_anchor[kind]
    a = dense.anchors_per_location
    out = []
    start = 0
    for (gh, gw), count in zip(dense.grid_sizes, dense.level_counts, strict=True):
        v = values[start : start + count].reshape(gh, gw, a)
        g = breakdown.group[start : start + count].reshape(gh, gw, a)
        out.append({LABEL_NAMES[code]: np.where(g == code, v, 0.0).sum(axis=2).astype(np.float32) for code in GROUPS})
        start += count
    return out
