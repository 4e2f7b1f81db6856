"""Task-aligned assignment (TOOD, Feng et al. ICCV 2021) in its two common definitions, named as such.

The alignment metric of an (anchor, GT) pair is ``t = s**alpha * u**beta``: s is the anchor's predicted probability
of the GT's class, u the overlap of its decoded predicted box with the GT. Per GT, the anchors with the largest t
become positives. The two definitions differ in every other step (reference.md 6.3):

==================  ==============================================  ==============================================
step                mmdet 3.3.0 ``TaskAlignedAssigner`` (TOOD)      Ultralytics 8.4.190 (YOLOv8 ``v8DetectionLoss``)
==================  ==============================================  ==============================================
defaults            topk 13, alpha 1, beta 6                        topk 10, alpha 0.5, beta 6
overlap u           IoU (union floored at 1e-6)                     CIoU (its own eps placement), clamped at 0
candidates          top-k by t over all anchors, then t > 0 and     top-k by t where t is 0 outside the GT: an
                    centre inside the GT (min side distance         anchor inside the GT with t = 0 can be picked;
                    > 0.01)                                         inside means distance > 1e-9, GT sides below
                                                                    ``stride_val`` widened to it about the centre
conflicts           the highest IoU among the GTs that picked it    the highest CIoU among *all* GTs (first GT on
                    (first GT on ties)                              ties), even one that did not pick it
soft target         t / (max t + 1e-7) * max IoU, per GT            t * max CIoU / (max t + 1e-9), per GT
                    (``TOODHead._get_targets_single``)              (``_forward``)
==================  ==============================================  ==============================================

Both run in torch float32 and follow the reference operation by operation on tensors of the same shapes, so the
float32 results match, and the top-k picks are ``torch.topk`` on the same rows, so ties break as the reference
breaks them (torch's partial sort, not by index). The goldens from the reference code are in
``tests/anchors/goldens`` (``bench/goldens/make_assigner_goldens.py``). One difference is on purpose: with fewer
anchors than topk, Ultralytics' ``torch.topk`` raises; here topk is capped at the number of anchors.

Example (reference.md 6.3: mmdet's own code gives gt_inds ``[0,0,0,0,0,0,1,1,0,0,1,1,0,0,2,2,0,0,0,0]``):
    see ``tests/anchors/test_tal.py::test_tal_mmdet_reference_6_3``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from explorer.anchors.assignment import Assignment
from explorer.anchors.dynamic import check_predictions, finish_assignment
from explorer.anchors.grid import LevelGrid
from explorer.anchors.iou import SparseIoU
from explorer.boxes import MMDET_IOU_EPS, box_centres, box_iou
from explorer.labels import BELOW_LOW_THRESHOLD
from explorer.losses.box import ciou_ultralytics

#: mmdet's in-GT margin (``min(l, t, r, b) > 0.01``) and TOOD's soft-target eps (``10e-8``).
MMDET_INSIDE_MARGIN = 0.01
TOOD_NORM_EPS = 10e-8
#: Ultralytics' ``select_candidates_in_gts`` eps and ``TaskAlignedAssigner.eps``.
ULTRALYTICS_EPS = 1e-9


def _resolve_highest(pos_a: np.ndarray, pos_g: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """(N,) matched GT per anchor (-1 if none): of an anchor's positive pairs, the highest ``value`` wins, the lowest
    GT on ties (``torch.max(dim)`` returns the first maximum)."""
    order = np.lexsort((pos_g, -value, pos_a))
    pos_a, pos_g = pos_a[order], pos_g[order]
    first = np.ones(len(pos_a), bool)
    first[1:] = pos_a[1:] != pos_a[:-1]
    matched = np.full(n, BELOW_LOW_THRESHOLD, np.int64)
    matched[pos_a[first]] = pos_g[first]
    return matched


def _tood_soft_target(matched: np.ndarray, metric: np.ndarray, iou: np.ndarray, m: int) -> np.ndarray:
    """TOOD's normalized target per positive: t / (max t of its GT + 1e-7) * max IoU of its GT (float32)."""
    pos = np.nonzero(matched >= 0)[0]
    g = matched[pos]
    max_t = np.zeros(m, np.float32)
    max_u = np.zeros(m, np.float32)
    np.maximum.at(max_t, g, metric[pos])
    np.maximum.at(max_u, g, iou[pos])
    out = np.zeros(len(matched), np.float32)
    out[pos] = metric[pos] / (max_t[g] + np.float32(TOOD_NORM_EPS)) * max_u[g]
    return out


def tal_mmdet_decision(
    anchors: np.ndarray,
    gt: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    decoded: np.ndarray,
    *,
    topk: int = 13,
    alpha: float = 1,
    beta: float = 6,
) -> dict[str, np.ndarray]:
    """mmdet's ``TaskAlignedAssigner.assign`` on checked inputs (M >= 1); see :func:`assign_tal_mmdet`.

    Returns:
        ``matched`` (N,) int64 GT or -1, and per anchor float32 (0 where not positive) ``metric`` (t),
        ``pred_iou`` (u) and ``soft_target`` (TOOD's t hat).
    """
    n, m = len(anchors), len(gt)
    overlaps = torch.from_numpy(box_iou(decoded, gt, union_eps=MMDET_IOU_EPS))  # (N, M)
    metric = torch.from_numpy(scores)[:, torch.from_numpy(labels)] ** alpha * overlaps**beta
    cand = metric.topk(min(topk, n), dim=0, largest=True).indices  # (k, M), all levels together
    cols = torch.arange(m)
    is_pos = metric[cand, cols] > 0
    centres = torch.from_numpy(box_centres(anchors))
    cx, cy = centres[:, 0][cand], centres[:, 1][cand]
    g = torch.from_numpy(gt)
    sides = torch.stack([cx - g[:, 0], cy - g[:, 1], g[:, 2] - cx, g[:, 3] - cy], dim=1)
    is_pos &= sides.min(dim=1).values > MMDET_INSIDE_MARGIN
    pos_k, pos_g = (t.numpy() for t in is_pos.nonzero(as_tuple=True))
    pos_a = cand.numpy()[pos_k, pos_g]
    ov = overlaps.numpy()
    matched = _resolve_highest(pos_a, pos_g, ov[pos_a, pos_g], n)
    pos = np.nonzero(matched >= 0)[0]
    t = np.zeros(n, np.float32)
    u = np.zeros(n, np.float32)
    t[pos] = metric.numpy()[pos, matched[pos]]
    u[pos] = ov[pos, matched[pos]]
    return {"matched": matched, "metric": t, "pred_iou": u, "soft_target": _tood_soft_target(matched, t, u, m)}


def _in_gts_ultralytics(points: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, stride_val: float | None):
    """(M, N) bool: the anchor point lies inside the GT, Ultralytics' ``select_candidates_in_gts``: GT sides below
    ``stride_val`` widened to it about the centre (xyxy -> xywh -> xyxy in float32 as its ``ops`` do), every
    distance > 1e-9. ``stride_val=None`` skips the widening and the round trip (Ultralytics 8.3 and earlier)."""
    boxes = gt
    if stride_val is not None:
        xywh = torch.empty_like(gt)
        xywh[:, 0] = (gt[:, 0] + gt[:, 2]) / 2
        xywh[:, 1] = (gt[:, 1] + gt[:, 3]) / 2
        xywh[:, 2] = gt[:, 2] - gt[:, 0]
        xywh[:, 3] = gt[:, 3] - gt[:, 1]
        small = (xywh[:, 2:] < stride_val) & valid[:, None]
        xywh[:, 2:] = torch.where(small, torch.tensor(stride_val, dtype=gt.dtype), xywh[:, 2:])
        boxes = torch.empty_like(gt)
        half = xywh[:, 2:] / 2
        boxes[:, :2] = xywh[:, :2] - half
        boxes[:, 2:] = xywh[:, :2] + half
    lt, rb = boxes[:, None, :2], boxes[:, None, 2:]  # (M, 1, 2)
    mask = points[:, 0] - lt[..., 0] > ULTRALYTICS_EPS
    mask &= points[:, 1] - lt[..., 1] > ULTRALYTICS_EPS
    mask &= rb[..., 0] - points[:, 0] > ULTRALYTICS_EPS
    mask &= rb[..., 1] - points[:, 1] > ULTRALYTICS_EPS
    return mask


def _ultralytics_metrics(
    scores: torch.Tensor, decoded: torch.Tensor, gt: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor,
    alpha: float, beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Dense (M, N) alignment metric and CIoU, non-zero only on ``pairs`` (M, N) bool (``get_box_metrics``)."""
    g_idx, a_idx = pairs.nonzero(as_tuple=True)
    bbox_scores = scores[a_idx, labels[g_idx]]
    overlap_values = ciou_ultralytics(gt[g_idx], decoded[a_idx]).squeeze(-1).clamp_(0)
    align_values = bbox_scores.pow(alpha) * overlap_values.pow(beta)
    overlaps = torch.zeros(pairs.shape, dtype=torch.float32)
    metric = torch.zeros(pairs.shape, dtype=torch.float32)
    overlaps[g_idx, a_idx] = overlap_values
    metric[g_idx, a_idx] = align_values
    return metric, overlaps


def tal_ultralytics_decision(
    anchors: np.ndarray,
    gt: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    decoded: np.ndarray,
    *,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    stride_val: float | None = 16.0,
) -> dict[str, np.ndarray]:
    """Ultralytics' ``TaskAlignedAssigner._forward`` for one image on checked inputs (M >= 1); see
    :func:`assign_tal_ultralytics`. Returns the same keys as :func:`tal_mmdet_decision`."""
    n, m = len(anchors), len(gt)
    g = torch.from_numpy(gt)
    valid = g.sum(1) > 0.0  # v8DetectionLoss's mask_gt: all-zero rows are padding
    points = torch.from_numpy(box_centres(anchors))
    in_gts = _in_gts_ultralytics(points, g, valid, stride_val)
    s, d, lab = torch.from_numpy(scores), torch.from_numpy(decoded), torch.from_numpy(labels)
    metric, overlaps = _ultralytics_metrics(s, d, g, lab, in_gts & valid[:, None], alpha, beta)
    # select_topk_candidates: top-k of every row, all-zero rows included; padding rows point at anchor 0 k times
    k = min(topk, n)
    topk_idxs = torch.topk(metric, k, dim=-1, largest=True).indices
    topk_idxs.masked_fill_(~valid[:, None].expand(-1, k), 0)
    count = torch.zeros(metric.shape, dtype=torch.int8)
    count.scatter_add_(-1, topk_idxs, torch.ones_like(topk_idxs, dtype=torch.int8))
    count.masked_fill_(count > 1, 0)
    mask_pos = count.mul_(in_gts).mul_(valid[:, None])
    # select_highest_overlaps: an anchor picked by several GTs goes to its highest CIoU over all GTs
    multi = (mask_pos.sum(0) > 1)[None].expand(m, -1)
    is_max = torch.zeros(mask_pos.shape, dtype=mask_pos.dtype)
    is_max.scatter_(0, overlaps.max(0).indices[None], 1)
    mask_pos = torch.where(multi, is_max, mask_pos)
    fg, target = mask_pos.max(0)
    fg_np, target_np = fg.numpy() > 0, target.numpy()
    cols = np.nonzero(fg_np)[0]
    raw_t = metric.numpy()[target_np[cols], cols].copy()
    raw_u = overlaps.numpy()[target_np[cols], cols].copy()
    # normalization, as _forward does it in place
    metric *= mask_pos
    pos_metric = metric.amax(dim=-1, keepdim=True)
    overlaps *= mask_pos
    pos_overlaps = overlaps.amax(dim=-1, keepdim=True)
    metric.mul_(pos_overlaps).div_(pos_metric + ULTRALYTICS_EPS)
    norm = metric.amax(0).numpy()
    matched = np.where(fg_np, target_np, BELOW_LOW_THRESHOLD).astype(np.int64)
    out = {key: np.zeros(n, np.float32) for key in ("metric", "pred_iou", "soft_target")}
    out["metric"][cols], out["pred_iou"][cols], out["soft_target"][cols] = raw_t, raw_u, norm[cols]
    return {"matched": matched, **out}


def _assign(
    decide: Any, method: str, anchors: Any, gt_boxes: Any, gt_labels: Any, scores: Any, decoded: Any,
    levels: np.ndarray | None, grids: Sequence[LevelGrid] | None, sparse: SparseIoU | None, **params: Any,
) -> Assignment:  # fmt: skip
    a, gt, labels, s, d = check_predictions(anchors, gt_boxes, gt_labels, scores, decoded)
    n = len(a)
    if len(gt) == 0 or n == 0:
        zeros = np.zeros(n, np.float32)
        res = {"matched": np.full(n, BELOW_LOW_THRESHOLD, np.int64), "metric": zeros, "pred_iou": zeros}
        res["soft_target"] = zeros
    else:
        res = decide(a, gt, labels, s, d, **params)
    return finish_assignment(
        a, gt, res["matched"], method=method, levels=levels, grids=grids, sparse=sparse,
        soft_target=res["soft_target"], assign_metric=res["metric"], pred_iou=res["pred_iou"],
    )  # fmt: skip


def assign_tal_mmdet(
    anchors: Any,
    gt_boxes: Any,
    gt_labels: Any,
    scores: Any,
    decoded: Any,
    *,
    topk: int = 13,
    alpha: float = 1,
    beta: float = 6,
    levels: np.ndarray | None = None,
    grids: Sequence[LevelGrid] | None = None,
    sparse: SparseIoU | None = None,
) -> Assignment:
    """Task-aligned assignment as mmdet 3.3.0's ``TaskAlignedAssigner`` with TOOD's settings.

    Per GT: ``t = s**alpha * IoU(predicted box, GT)**beta`` for every anchor; the ``topk`` anchors with the largest t
    over all levels together are candidates; those with t > 0 and a centre inside the GT (min distance to the sides
    > 0.01) are positives. An anchor claimed by several GTs keeps the one its predicted box overlaps most. The soft
    target is TOOD's ``t / max t * max IoU`` over the GT's positives. mmdet's priors are the anchors here (TOOD
    passes its anchors; its ``inside_flags`` filter is not applied, as torchvision has none).

    Args:
        anchors: (N, 4) float32 xyxy (the priors).
        gt_boxes: (M, 4) xyxy; M = 0 makes every anchor a negative.
        gt_labels: (M,) class indices.
        scores: (N, C) class probabilities (after the sigmoid), detached.
        decoded: (N, 4) decoded predicted boxes xyxy.
        topk: candidates per GT (13, ``tood_r50_fpn_1x_coco.py``).
        alpha, beta: exponents of the score and the IoU (1, 6).
        levels: (N,) level index per anchor (for per-level results), optional.
        grids: the anchor grid, for the fast sparse IoU of the anchors (the hard/easy split), optional.
        sparse: a precomputed :class:`SparseIoU` of these anchors and GTs, optional.

    Returns:
        An :class:`Assignment` with ``method="tal_mmdet"``, ``assign_metric`` (t), ``pred_iou`` (IoU of the
        predicted box) and ``soft_target`` (t hat) for the positives.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    return _assign(
        tal_mmdet_decision, "tal_mmdet", anchors, gt_boxes, gt_labels, scores, decoded, levels, grids, sparse,
        topk=topk, alpha=alpha, beta=beta,
    )  # fmt: skip


def assign_tal_ultralytics(
    anchors: Any,
    gt_boxes: Any,
    gt_labels: Any,
    scores: Any,
    decoded: Any,
    *,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    stride_val: float | None = 16.0,
    levels: np.ndarray | None = None,
    grids: Sequence[LevelGrid] | None = None,
    sparse: SparseIoU | None = None,
) -> Assignment:
    """Task-aligned assignment as Ultralytics 8.4.190's ``TaskAlignedAssigner`` in YOLOv8's ``v8DetectionLoss``.

    Per GT: ``t = s**alpha * max(CIoU(GT, predicted box), 0)**beta`` for the anchors whose point (the anchor centre
    here; Ultralytics' cell centres) lies inside the GT, 0 elsewhere; the ``topk`` largest t of the row are picked,
    zeros included, and the picked anchors inside the GT are positives (so a positive can have t = 0). An anchor
    picked by several GTs goes to the GT with its highest CIoU among all GTs. The soft target (the matched class's
    entry of ``target_scores``) is ``t * max CIoU / (max t + 1e-9)`` over the GT's positives. GT rows whose
    coordinates sum to <= 0 are padding, as the loss's ``mask_gt`` makes them.

    Args:
        anchors, gt_boxes, gt_labels, scores, decoded, levels, grids, sparse: as :func:`assign_tal_mmdet`.
        topk: candidates per GT (10, ``v8DetectionLoss(tal_topk=10)``).
        alpha, beta: exponents (0.5, 6.0).
        stride_val: GT sides below it are widened to it for the inside test: the model's second stride
            (``stride[1]``: 16 for YOLOv8's 8/16/32 and for RetinaNet's P3-P7). None: no widening (Ultralytics
            8.3 and earlier).

    Returns:
        An :class:`Assignment` with ``method="tal_ultralytics"``, ``assign_metric`` (t), ``pred_iou`` (clamped
        CIoU) and ``soft_target`` for the positives.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if stride_val is not None and not stride_val > 0:
        raise ValueError(f"stride_val must be > 0 or None, got {stride_val}")
    return _assign(
        tal_ultralytics_decision, "tal_ultralytics", anchors, gt_boxes, gt_labels, scores, decoded, levels, grids,
        sparse, topk=topk, alpha=alpha, beta=beta, stride_val=stride_val,
    )  # fmt: skip
