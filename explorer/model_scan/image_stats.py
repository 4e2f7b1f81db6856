"""One image's model-scan statistics: where a real detector's classification loss goes, reduced from its dense
outputs to a row of numbers (the logits are never kept).

The loss is torchvision's (``RetinaNetClassificationHead.compute_loss``): anchors labelled by
``Matcher(0.5, 0.4, allow_low_quality_matches=True)`` on the boxes scaled to the input as torchvision scales them
(:mod:`explorer.anchors.max_iou`, the dataset scan's labels), a one-hot target at the matched box's class for
positives, zeros for negatives, anchors between the thresholds left out, the sigmoid focal loss summed over every
class and anchor and divided by ``max(1, positives)``. ``ce_loss`` is the same with plain binary cross-entropy; the box
loss is torchvision's L1 on the encoded deltas of the positives (``RetinaNetRegressionHead``, ``bbox_reg_loss_type
"l1"``). Everything else is split by group (positive, hard and easy negative by IoU, as the dataset scan says), by
FPN level, and by the classifier itself: an anchor is *easy* when its p_t (a positive's probability of its box's
class, a negative's 1 - its highest class probability) is at least ``pt_thresh`` (0.6).

Element-wise, with ``t`` the target and ``x`` the logit: ``ce = softplus(x) - t x`` and ``log q = (1 - 2t) x - ce``
where ``q = 1 - p_t``, so focal ``= alpha_t q^gamma ce`` at any gamma without running the model again. Exact sums
are kept at :data:`GAMMAS`; :mod:`explorer.model_scan.reweight` holds binned sums of ``ce`` and ``ce log q`` from
which any (alpha, gamma) follows within a stated bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.models.detection._utils import BoxCoder

from explorer.anchors.max_iou import assign_max_iou
from explorer.boxes import iou_pairs
from explorer.detection.evaluation import gt_arrays
from explorer.detection.outputs import DenseOutputs, decode_deltas
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, POSITIVE, AnchorLabel
from explorer.losses.box import ciou_loss, diou_loss, giou_loss, l1_loss, smooth_l1_loss
from explorer.model_scan.reweight import LossBins

#: The focal-loss gammas whose per-image values are exact (the page's other gammas come from the bins).
GAMMAS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)
#: The groups whose loss counts (ignored anchors are left out, as in torchvision), in the bins' order.
COUNTED: tuple[AnchorLabel, ...] = (POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE)
#: Score-IoU consistency: a positive is "high IoU, low score" at IoU >= 0.7 and score < 0.3, "high score, low IoU"
#: at score >= 0.5 and IoU < 0.5 (the cases QFL and Varifocal train away).
HIGH_IOU, LOW_SCORE, HIGH_SCORE, LOW_IOU = 0.7, 0.3, 0.5, 0.5
_BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
#: torchvision's box losses on decoded boxes (``_utils._box_loss``: eps 1e-7); L1 and smooth L1 use encoded deltas.
BOX_LOSSES = {"l1": None, "smooth_l1": None, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}


@dataclass(frozen=True)
class LossSettings:
    """What the scan computes with (torchvision's RetinaNet defaults).

    Attributes:
        alpha: focal alpha (-1: no alpha weighting); gamma: focal gamma.
        pt_thresh: p_t at or above which an anchor is easy for the classifier.
        pos_thresh, neg_thresh: the Matcher's IoU thresholds.
        box_loss: the regression head's ``_loss_type`` (torchvision's default "l1"; the demo model trains "giou").
    """

    alpha: float = 0.25
    gamma: float = 2.0
    pt_thresh: float = 0.6
    pos_thresh: float = 0.5
    neg_thresh: float = 0.4
    box_loss: str = "l1"

    def __post_init__(self) -> None:
        if self.box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {sorted(BOX_LOSSES)}, got {self.box_loss!r}")
        if not (self.alpha == -1 or 0 <= self.alpha <= 1):
            raise ValueError(f"alpha must be in [0, 1] or -1, got {self.alpha}")
        if not 0 <= self.gamma <= 10:
            raise ValueError(f"gamma must be in [0, 10], got {self.gamma}")
        if not 0 < self.pt_thresh < 1:
            raise ValueError(f"pt_thresh must be in (0, 1), got {self.pt_thresh}")


@dataclass
class ImageLosses:
    """The loss part of one image's statistics.

    Attributes:
        row: column -> value (see :func:`image_losses`).
        bins: the image's :class:`LossBins` (weights 1 / max(1, positives): they add up to the dataset's mean).
        positive_score: (P,) float32 probability of each positive anchor's box class.
        positive_iou: (P,) float32 IoU of each positive's decoded box with its box (input pixels).
        positive_gt: (P,) int64 the matched box (index into the image's boxes).
    """

    row: dict[str, float]
    bins: LossBins
    positive_score: np.ndarray
    positive_iou: np.ndarray
    positive_gt: np.ndarray


def gamma_column(gamma: float, group: str | None = None) -> str:
    """The column of the exact focal loss at ``gamma`` (normalized; per group: the raw sum)."""
    base = f"focal_g{gamma:g}"
    return base if group is None else f"{base}_{group}"


def _elementwise(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (N, K) binary CE and log(1 - p_t) of every (anchor, class)."""
    x = logits.double()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, targets, reduction="none")
    log_q = (1 - 2 * targets) * x - ce
    return ce, log_q


def _alpha_t(targets: torch.Tensor, alpha: float) -> torch.Tensor | float:
    return 1.0 if alpha < 0 else alpha * targets + (1 - alpha) * (1 - targets)


def image_losses(
    dense: DenseOutputs, gt_boxes: np.ndarray, gt_labels: np.ndarray, settings: LossSettings | None = None
) -> ImageLosses:
    """Where one image's loss goes, from the model's dense outputs and the image's (non-crowd) boxes.

    Args:
        dense: the model's outputs for the image (``explorer.detection.inference``).
        gt_boxes: (M, 4) xyxy in original-image pixels; gt_labels: (M,) model label ids.
        settings: alpha, gamma, the p_t threshold and the Matcher's thresholds.

    Returns:
        :class:`ImageLosses`. Row columns: the anchors per label (``positives``, ``ignored``, ``hard_negatives``,
        ``easy_negatives``), ``normalizer`` (max(1, positives)), ``focal_loss``, ``ce_loss``, ``box_loss``
        (normalized as torchvision), per counted group ``<group>_focal`` / ``<group>_ce`` (raw sums), per level
        ``P<k>_focal`` / ``P<k>_ce`` / ``P<k>_positives``, per group ``<group>_easy_pt`` / ``<group>_hard_pt``
        (anchors) with ``..._focal`` and ``..._ce`` sums, and :func:`gamma_column` values at :data:`GAMMAS`.

    Raises:
        ValueError: a box label outside the model's classes.
    """
    cfg = settings or LossSettings()
    boxes, labels = gt_arrays(gt_boxes, gt_labels)
    num_classes = dense.cls_logits.shape[1]
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"a box label is outside the model's {num_classes} classes (0..{num_classes - 1})")
    gt_input = dense.to_input(boxes)
    assignment = assign_max_iou(
        dense.anchors.numpy(), gt_input, pos_thresh=cfg.pos_thresh, neg_thresh=cfg.neg_thresh,
        levels=dense.levels.numpy(),
    )  # fmt: skip
    group = torch.from_numpy(assignment.label.astype(np.int64))
    pos = np.flatnonzero(assignment.label == POSITIVE)
    gt_of_pos = assignment.matched_gt[pos]
    targets = torch.zeros(dense.cls_logits.shape, dtype=torch.float64)
    targets[torch.from_numpy(pos), torch.from_numpy(labels[gt_of_pos])] = 1.0
    ce, log_q = _elementwise(dense.cls_logits, targets)
    alpha_t = _alpha_t(targets, cfg.alpha)
    normalizer = float(max(1, len(pos)))
    row: dict[str, float] = {label.column: int((assignment.label == label).sum()) for label in AnchorLabel}
    row["normalizer"] = normalizer
    focal = (alpha_t * torch.exp(cfg.gamma * log_q) * ce).sum(dim=1)
    per_anchor = {"focal": focal.numpy(), "ce": ce.sum(dim=1).numpy()}
    code = assignment.label.astype(np.int64)
    counted = code != int(AnchorLabel.IGNORED)
    for kind, values in per_anchor.items():
        row[f"{kind}_loss"] = float(values[counted].sum()) / normalizer
    row["box_loss"] = _box_loss(dense, gt_input, pos, gt_of_pos, cfg.box_loss) / normalizer
    levels = dense.levels.numpy()
    easy = _easy_by_pt(dense.cls_logits, pos, labels[gt_of_pos], cfg.pt_thresh)
    _split_columns(row, per_anchor, code, levels, easy, len(dense.grid_sizes))
    _gamma_columns(row, ce, log_q, alpha_t, code, normalizer)
    score, iou = _score_iou(dense, gt_input, pos, gt_of_pos, labels)
    bins = LossBins.from_elements(ce, log_q, targets, group, weight=1.0 / normalizer)
    return ImageLosses(row, bins, score, iou, gt_of_pos.astype(np.int64))


def _box_loss(dense: DenseOutputs, gt_input: np.ndarray, pos: np.ndarray, gt_of_pos: np.ndarray, kind: str) -> float:
    """torchvision's regression loss sum over the positives (not normalized), of the head's loss type."""
    if len(pos) == 0:
        return 0.0
    pos_t = torch.from_numpy(pos)
    gt = torch.from_numpy(gt_input[gt_of_pos])
    deltas, anchors = dense.bbox_deltas[pos_t], dense.anchors[pos_t]
    if kind in ("l1", "smooth_l1"):
        diff = deltas - _BOX_CODER.encode_single(gt, anchors)
        return float((l1_loss(diff) if kind == "l1" else smooth_l1_loss(diff, beta=1.0)).sum())
    return float(BOX_LOSSES[kind](decode_deltas(deltas, anchors), gt, eps=1e-7).sum())


def _easy_by_pt(logits: torch.Tensor, pos: np.ndarray, pos_labels: np.ndarray, thresh: float) -> np.ndarray:
    """(N,) bool: p_t >= thresh (a positive's probability of its box's class, a negative's 1 - its highest)."""
    p_t = 1.0 - torch.sigmoid(logits.double()).amax(dim=1)
    if len(pos):
        pos_t = torch.from_numpy(pos)
        p_t[pos_t] = torch.sigmoid(logits[pos_t, torch.from_numpy(pos_labels)].double())
    return (p_t >= thresh).numpy()


def _split_columns(
    row: dict[str, float], per_anchor: dict[str, np.ndarray], code: np.ndarray, levels: np.ndarray,
    easy: np.ndarray, num_levels: int,
) -> None:  # fmt: skip
    """Sums by group, by level (counted anchors) and by group and p_t, each one bincount."""
    counted = code != int(AnchorLabel.IGNORED)
    by_pt = code * 2 + easy
    row.update({f"P{lv + 3}_positives": int(n) for lv, n in
                enumerate(np.bincount(levels[code == int(POSITIVE)], minlength=num_levels))})  # fmt: skip
    pt_counts = np.bincount(by_pt, minlength=8)
    for kind, values in per_anchor.items():
        per_group = np.bincount(code, weights=values, minlength=4)
        per_level = np.bincount(levels[counted], weights=values[counted], minlength=num_levels)
        per_pt = np.bincount(by_pt, weights=values, minlength=8)
        for g in COUNTED:
            row[f"{g.column}_{kind}"] = float(per_group[g])
            for name, k in (("easy_pt", 2 * g + 1), ("hard_pt", 2 * g)):
                row[f"{g.column}_{name}"] = int(pt_counts[k])
                row[f"{g.column}_{name}_{kind}"] = float(per_pt[k])
        for lv in range(num_levels):
            row[f"P{lv + 3}_{kind}"] = float(per_level[lv])


def _gamma_columns(
    row: dict[str, float],
    ce: torch.Tensor,
    log_q: torch.Tensor,
    alpha_t: torch.Tensor | float,
    code: np.ndarray,
    normalizer: float,
) -> None:
    weighted = alpha_t * ce
    counted = code != int(AnchorLabel.IGNORED)
    for gamma in GAMMAS:
        per_anchor = ((weighted * torch.exp(gamma * log_q)).sum(dim=1) if gamma else weighted.sum(dim=1)).numpy()
        row[gamma_column(gamma)] = float(per_anchor[counted].sum()) / normalizer
        per_group = np.bincount(code, weights=per_anchor, minlength=4)
        for g in COUNTED:
            row[gamma_column(gamma, g.column)] = float(per_group[g])


def _score_iou(
    dense: DenseOutputs, gt_input: np.ndarray, pos: np.ndarray, gt_of_pos: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each positive's score for its box's class and the IoU of its decoded (clipped) box with the box."""
    if len(pos) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    pos_t = torch.from_numpy(pos)
    score = torch.sigmoid(dense.cls_logits[pos_t, torch.from_numpy(labels[gt_of_pos])]).numpy().astype(np.float32)
    decoded = dense.decoded_boxes()[pos_t].numpy()
    return score, iou_pairs(decoded, gt_input[gt_of_pos]).astype(np.float32)


def consistency_columns(score: np.ndarray, iou: np.ndarray) -> dict[str, float]:
    """Per image: the correlation of positives' score and IoU (NaN below 2 positives or without spread), and the
    counts of high-IoU/low-score and high-score/low-IoU positives."""
    corr = float("nan")
    if len(score) >= 2 and score.std() > 0 and iou.std() > 0:
        corr = float(np.corrcoef(score.astype(np.float64), iou.astype(np.float64))[0, 1])
    return {
        "score_iou_corr": corr,
        "high_iou_low_score": int(((iou >= HIGH_IOU) & (score < LOW_SCORE)).sum()),
        "high_score_low_iou": int(((score >= HIGH_SCORE) & (iou < LOW_IOU)).sum()),
    }
