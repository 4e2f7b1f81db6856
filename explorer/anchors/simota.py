"""SimOTA (YOLOX, Ge et al. 2021) as mmdet 3.3.0's ``SimOTAAssigner``: optimal-transport-like assignment with a
dynamic number of positives per GT.

1. Candidates: priors whose centre is inside some GT (every side distance > 0) or inside some GT's centre region
   (the GT centre +- ``center_radius`` strides); only these are ever positive.
2. Cost of (candidate, GT): ``cls_weight * sum_c BCE(score_c, onehot_c) + iou_weight * -log(IoU + 1e-7)``, plus
   100000 unless the prior is inside both that GT and its centre region. The IoU is that of the decoded predicted
   box with the GT (mmdet's ``bbox_overlaps``, union floored at 1e-6).
3. Dynamic k per GT: ``max(int(sum of its candidate_topk largest IoUs), 1)``; the GT takes its k cheapest candidates
   (``torch.topk``, so ties break as in mmdet).
4. A candidate taken by several GTs goes to its cheapest GT over *all* GTs (the first on ties).

A GT without candidates of its own still takes its k cheapest candidates, all paying the 100000 penalty.

Priors from anchors: mmdet's SimOTA reads priors as ``(cx, cy, stride_w, stride_h)``; YOLOX's head passes its grid
points moved to the cell centres (``priors[:, :2] + priors[:, 2:] * 0.5``) with the level's strides. Here an
anchor's prior is its centre (torchvision's grids put the centres on the grid points ``j * stride``, the first on
pixel 0) and the stride of its level (:func:`prior_strides`); each of the A anchors of a location is its own prior
(YOLOX has A = 1). YOLOX passes ``scores = sqrt(sigmoid(cls) * sigmoid(obj))``; pass the model's probabilities.

Everything runs in torch float32 following mmdet operation by operation (same tensor layouts where a vectorized
kernel's last bit depends on it), so labels equal mmdet's and the IoUs are bitwise equal. mmdet builds the whole
(K, M) cost matrix, its classification part through a (K, M, C) tensor; :func:`simota_decision` computes only the
entries that decide (each GT's in-both pairs, a GT's whole column when those do not decide, the rows of priors
taken twice), each summed exactly as mmdet's tensor sums it. ``dense=True`` and :func:`simota_cost` run mmdet's
steps literally (tests check both against the goldens and against each other).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from explorer.anchors.assignment import Assignment
from explorer.anchors.dynamic import check_predictions, finish_assignment
from explorer.anchors.grid import LevelGrid
from explorer.anchors.iou import SparseIoU
from explorer.boxes import MMDET_IOU_EPS, box_centres, box_iou
from explorer.labels import BELOW_LOW_THRESHOLD

#: mmdet's ``sim_ota_assigner.py`` constants: the not-in-both penalty and the eps inside -log(IoU + eps).
SIMOTA_INF = 100000.0
SIMOTA_EPS = 1.0e-7
#: Elements per chunk of the classification cost (bounds memory at about 16 MB per tensor).
_CHUNK = 4_000_000


def prior_strides(grids: Sequence[LevelGrid]) -> np.ndarray:
    """(N, 2) float32 ``(stride_w, stride_h)`` of every anchor of the grids, level by level (the SimOTA priors'
    strides)."""
    parts = [np.tile(np.array([g.stride_hw[1], g.stride_hw[0]], np.float32), (g.num_anchors, 1)) for g in grids]
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)


def _candidates(
    centres: np.ndarray, strides: np.ndarray, gt: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """``get_in_gt_and_in_center_info``: (N,) bool valid priors and (K, M) bool in-box-and-in-centre of the valid.

    mmdet tests ``min(x - x1, y - y1, x2 - x, y2 - y) > 0``; for finite floats ``a - b > 0`` exactly when
    ``a > b``, so comparisons decide the same without float temporaries. The centre region's sides are mmdet's
    float32 ``gt_cx -+ radius * stride_x``. Consecutive priors with the same centre and stride (the A anchors of a
    location) are tested once.
    """
    key = np.concatenate([centres, strides], axis=1)
    start = np.ones(len(key), bool)
    start[1:] = (key[1:] != key[:-1]).any(axis=1)
    run = np.cumsum(start) - 1  # prior -> its run
    x, y = centres[start, :1], centres[start, 1:]
    rx, ry = np.float32(radius) * strides[start, :1], np.float32(radius) * strides[start, 1:]
    in_gts = (x > gt[:, 0]) & (y > gt[:, 1]) & (x < gt[:, 2]) & (y < gt[:, 3])
    gt_cx = (gt[:, 0] + gt[:, 2]) / np.float32(2)
    gt_cy = (gt[:, 1] + gt[:, 3]) / np.float32(2)
    in_cts = (x > gt_cx - rx) & (y > gt_cy - ry) & (x < gt_cx + rx) & (y < gt_cy + ry)
    valid_run = in_gts.any(axis=1) | in_cts.any(axis=1)
    valid = valid_run[run]
    both = in_gts & in_cts
    return valid, both[run[valid]]


def _cls_cost(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, M) float32 ``sum_c BCE(scores[k, c], onehot(labels[m])_c)``, each row summed as mmdet's (K, M, C)
    tensor is; rows are built once per distinct class. ``binary_cross_entropy`` is elementwise, so every term equals
    mmdet's."""
    k, c = scores.shape
    classes, inverse = torch.unique(labels, return_inverse=True)
    d = len(classes)
    bce0 = F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none")
    bce1 = F.binary_cross_entropy(scores, torch.ones_like(scores), reduction="none")[:, classes]  # (K, D)
    out = torch.empty((k, d), dtype=torch.float32)
    step = max(1, _CHUNK // max(1, d * c))
    arange_d = torch.arange(d)
    for s in range(0, k, step):
        rows = bce0[s : s + step, None, :].repeat(1, d, 1)  # (k', D, C) contiguous rows of C
        rows[:, arange_d, classes] = bce1[s : s + step]
        out[s : s + step] = rows.sum(-1)
    return out[:, inverse]


def _dynamic_k_matching(cost: torch.Tensor, ious: torch.Tensor, candidate_topk: int) -> tuple[torch.Tensor, ...]:
    """mmdet's ``dynamic_k_matching``: (K,) bool foreground, (F,) matched GT, (F,) IoU, (M,) dynamic k."""
    num_gt = cost.shape[1]
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    topk_ious = torch.topk(ious, min(candidate_topk, ious.size(0)), dim=0).values
    dynamic_ks = torch.clamp(topk_ious.sum(0).int(), min=1)
    for g in range(num_gt):
        pos_idx = torch.topk(cost[:, g], k=int(dynamic_ks[g]), largest=False).indices
        matching[:, g][pos_idx] = 1
    multi = matching.sum(1) > 1
    if multi.any():
        cost_argmin = torch.min(cost[multi, :], dim=1).indices
        matching[multi, :] *= 0
        matching[multi, cost_argmin] = 1
    fg = matching.sum(1) > 0
    matched_gt = matching[fg, :].argmax(1)
    matched_iou = (matching * ious).sum(1)[fg]
    return fg, matched_gt, matched_iou, dynamic_ks


def _prepare(
    anchors: np.ndarray, gt: np.ndarray, decoded: np.ndarray, strides: np.ndarray, center_radius: float
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(K,) candidate anchors, (K, M) in-both mask and (K, M) IoU of their predicted boxes with the GTs."""
    valid, in_both = _candidates(box_centres(anchors), strides, gt, center_radius)
    valid_idx = np.nonzero(valid)[0]
    ious = torch.from_numpy(box_iou(decoded[valid_idx], gt, union_eps=MMDET_IOU_EPS))
    return valid_idx, torch.from_numpy(in_both), ious


def _dense_cost(
    scores: torch.Tensor, labels: torch.Tensor, ious: torch.Tensor, in_both: torch.Tensor, cls_w: float, iou_w: float
) -> torch.Tensor:
    """mmdet's (K, M) cost matrix, literally."""
    iou_cost = -torch.log(ious + SIMOTA_EPS)
    return _cls_cost(scores, labels) * cls_w + iou_cost * iou_w + (~in_both) * SIMOTA_INF


def simota_cost(
    anchors: np.ndarray,
    gt: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    decoded: np.ndarray,
    strides: np.ndarray,
    *,
    center_radius: float = 2.5,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """The candidates and mmdet's whole cost matrix on checked inputs (M >= 1).

    Returns:
        ``valid_idx`` (K,) int64 candidate anchors, ``cost`` (K, M) float32 and ``ious`` (K, M) float32 (predicted
        box with GT); K may be 0.
    """
    valid_idx, in_both, ious = _prepare(anchors, gt, decoded, strides, center_radius)
    sc, lab = torch.from_numpy(scores[valid_idx]), torch.from_numpy(labels)
    return valid_idx, _dense_cost(sc, lab, ious, in_both, cls_weight, iou_weight), ious


class _Costs:
    """Exact entries of mmdet's cost matrix on demand: ``cls * cls_weight + iou_cost * iou_weight + INF * (not in
    both)``, the classification term summed per row as mmdet sums it (:func:`_cls_cost`), ``iou_cost`` the dense
    ``-log(IoU + 1e-7)`` in mmdet's (K, M) layout (vectorized log differs from scalar log in the last bit, so its
    layout is kept)."""

    def __init__(self, scores: torch.Tensor, labels: torch.Tensor, ious: torch.Tensor, in_both: torch.Tensor,
                 cls_weight: float, iou_weight: float) -> None:  # fmt: skip
        self.scores, self.labels, self.in_both = scores, labels, in_both
        self.iou_cost = -torch.log(ious + SIMOTA_EPS)
        self.weights = (cls_weight, iou_weight)

    def cls(self, ks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(P,) classification cost of priors ``ks`` for ``classes``: one (C,) BCE row each, summed by torch."""
        out = torch.empty(len(ks), dtype=torch.float32)
        step = max(1, _CHUNK // max(1, self.scores.shape[1]))
        for s in range(0, len(ks), step):
            sc = self.scores[ks[s : s + step]]
            rows = F.binary_cross_entropy(sc, torch.zeros_like(sc), reduction="none")
            hit = torch.arange(len(sc)), classes[s : s + step]
            rows[hit] = F.binary_cross_entropy(sc[hit], torch.ones(len(sc)), reduction="none")
            out[s : s + step] = rows.sum(-1)
        return out

    def pairs(self, ks: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
        """(P,) cost of the (prior, GT) pairs."""
        cls_w, iou_w = self.weights
        return (
            self.cls(ks, self.labels[gs]) * cls_w + self.iou_cost[ks, gs] * iou_w + (~self.in_both[ks, gs]) * SIMOTA_INF
        )


def _take(costs: _Costs, k_g: int, g: int, ks: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The ``k_g`` cheapest priors of GT g: its in-both pairs ``ks`` with ``values`` when they decide it (enough of
    them and no tie at the k-th; every other prior pays 100000 more), else ``torch.topk`` on its whole column."""
    n_in = len(ks)
    if n_in >= k_g:
        order = torch.sort(values, stable=True).indices
        if n_in == k_g or values[order[k_g - 1]] < values[order[k_g]]:
            return ks[order[:k_g]]
    k_all = costs.in_both.shape[0]
    column = costs.pairs(torch.arange(k_all), torch.full((k_all,), g))
    return torch.topk(column, k=k_g, largest=False).indices


def _matching(costs: _Costs, ious: torch.Tensor, candidate_topk: int) -> tuple[torch.Tensor, ...]:
    """``dynamic_k_matching`` without the dense cost matrix: same decisions, same ties (see :func:`_take`)."""
    k_all, m = ious.shape
    dynamic_ks = torch.clamp(torch.topk(ious, min(candidate_topk, k_all), dim=0).values.sum(0).int(), min=1)
    pk, pg = costs.in_both.nonzero(as_tuple=True)
    order = torch.sort(pg, stable=True).indices
    pk, pg = pk[order], pg[order]
    values = costs.pairs(pk, pg)
    bounds = torch.searchsorted(pg, torch.arange(m + 1)).tolist()
    taken = [_take(costs, int(dynamic_ks[g]), g, pk[bounds[g] : bounds[g + 1]], values[bounds[g] : bounds[g + 1]])
             for g in range(m)]  # fmt: skip
    tk = torch.cat(taken)
    tg = torch.cat([torch.full((len(t),), g) for g, t in enumerate(taken)])
    count = torch.bincount(tk, minlength=k_all)
    matched = torch.full((k_all,), -1, dtype=torch.int64)
    matched[tk] = tg  # priors taken once keep their GT
    multi = torch.nonzero(count > 1).squeeze(1)
    if len(multi):  # taken several times: the cheapest GT over all GTs (first on ties), as torch.min(dim=1)
        rows = costs.pairs(multi.repeat_interleave(m), torch.arange(m).repeat(len(multi))).view(-1, m)
        matched[multi] = torch.min(rows, dim=1).indices
    fg = count > 0
    return fg, matched[fg], ious[fg, matched[fg]], dynamic_ks


def simota_decision(
    anchors: np.ndarray,
    gt: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    decoded: np.ndarray,
    strides: np.ndarray,
    *,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
    dense: bool = False,
) -> dict[str, np.ndarray]:
    """mmdet's ``SimOTAAssigner.assign`` on checked inputs (M >= 1); see :func:`assign_simota`.

    ``dense=True`` runs mmdet's steps literally (the whole cost matrix, :func:`simota_cost`); the default computes
    only the cost entries that decide (each GT's in-both pairs, a GT's whole column when they do not decide, the
    rows of priors taken twice): the same decisions, about 10x faster on a full image. The fast path needs every
    in-both cost below the 100000 penalty, true for fewer than 999 classes; beyond, the dense path runs.

    Returns:
        ``matched`` (N,) int64 GT or -1, ``pred_iou`` (N,) float32 IoU of the predicted box with the matched GT (0
        where not positive), ``dynamic_k`` (M,) int64 (0 for every GT when no prior is a candidate).
    """
    n, m = len(anchors), len(gt)
    matched = np.full(n, BELOW_LOW_THRESHOLD, np.int64)
    pred_iou = np.zeros(n, np.float32)
    valid_idx, in_both, ious = _prepare(anchors, gt, decoded, strides, center_radius)
    if len(valid_idx) == 0:
        return {"matched": matched, "pred_iou": pred_iou, "dynamic_k": np.zeros(m, np.int64)}
    sc, lab = torch.from_numpy(scores[valid_idx]), torch.from_numpy(labels)
    if dense or scores.shape[1] >= 999:
        cost = _dense_cost(sc, lab, ious, in_both, cls_weight, iou_weight)
        fg, matched_gt, matched_iou, dynamic_ks = _dynamic_k_matching(cost, ious, candidate_topk)
    else:
        costs = _Costs(sc, lab, ious, in_both, cls_weight, iou_weight)
        fg, matched_gt, matched_iou, dynamic_ks = _matching(costs, ious, candidate_topk)
    pos = valid_idx[fg.numpy()]
    matched[pos] = matched_gt.numpy()
    pred_iou[pos] = matched_iou.numpy()
    return {"matched": matched, "pred_iou": pred_iou, "dynamic_k": dynamic_ks.numpy().astype(np.int64)}


def assign_simota(
    anchors: Any,
    gt_boxes: Any,
    gt_labels: Any,
    scores: Any,
    decoded: Any,
    *,
    strides: Any,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
    levels: np.ndarray | None = None,
    grids: Sequence[LevelGrid] | None = None,
    sparse: SparseIoU | None = None,
) -> Assignment:
    """SimOTA as mmdet 3.3.0's ``SimOTAAssigner`` with its defaults (see the module docstring for the steps).

    Args:
        anchors: (N, 4) float32 xyxy; each anchor's centre is its prior point.
        gt_boxes: (M, 4) xyxy; M = 0 makes every anchor a negative.
        gt_labels: (M,) class indices.
        scores: (N, C) class probabilities (YOLOX: sqrt(cls * objectness)), detached.
        decoded: (N, 4) decoded predicted boxes xyxy.
        strides: (N, 2) ``(stride_w, stride_h)`` of each anchor's level (:func:`prior_strides`).
        center_radius: half-size of the centre region in strides (2.5).
        candidate_topk: IoUs summed for the dynamic k (10).
        iou_weight, cls_weight: weights of the IoU and classification costs (3.0, 1.0).
        levels, grids, sparse: as :func:`explorer.anchors.tal.assign_tal_mmdet` (the anchors' own IoU, for the
            hard/easy split of the negatives).

    Returns:
        An :class:`Assignment` with ``method="simota"``, ``pred_iou`` and ``soft_target`` (YOLOX's classification
        target: the predicted box's IoU with the matched GT) for the positives, and the per-GT ``dynamic_k``.
    """
    if candidate_topk < 1 or not center_radius > 0:
        raise ValueError(f"need candidate_topk >= 1 and center_radius > 0, got {candidate_topk}, {center_radius}")
    a, gt, labels, s, d = check_predictions(anchors, gt_boxes, gt_labels, scores, decoded)
    st = np.asarray(strides, dtype=np.float32)
    if st.shape != (len(a), 2) or not (np.isfinite(st).all() and (st > 0).all()):
        raise ValueError(f"strides must be (N={len(a)}, 2) positive (stride_w, stride_h), got shape {st.shape}")
    if len(gt) == 0 or len(a) == 0:
        res = {
            "matched": np.full(len(a), BELOW_LOW_THRESHOLD, np.int64),
            "pred_iou": np.zeros(len(a), np.float32),
            "dynamic_k": np.zeros(len(gt), np.int64),
        }
    else:
        res = simota_decision(
            a, gt, labels, s, d, st, center_radius=center_radius, candidate_topk=candidate_topk,
            iou_weight=iou_weight, cls_weight=cls_weight,
        )  # fmt: skip
    return finish_assignment(
        a, gt, res["matched"], method="simota", levels=levels, grids=grids, sparse=sparse,
        soft_target=res["pred_iou"], pred_iou=res["pred_iou"], dynamic_k=res["dynamic_k"],
    )  # fmt: skip
