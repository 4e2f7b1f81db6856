"""Tests for explorer.anchors.tal: both task-aligned assigners against the reference code's goldens (mmdet 3.3.0,
Ultralytics 8.4.190), reference.md 6.3's vector, the behaviours that tell the two apart, and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.anchors.tal import assign_tal_mmdet, assign_tal_ultralytics
from explorer.boxes import box_centres, box_iou
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, POSITIVE
from tests.anchors.helpers import (
    assigner_goldens,
    golden_cases,
    golden_inputs,
    golden_outputs,
    prediction_args,
    random_boxes,
)

#: Metrics must agree to float32 rounding: vectorized pow/atan differ from scalar ones by an ulp on other CPUs.
RTOL = 3e-7


def _stride_val(inputs: dict[str, np.ndarray]) -> float:
    strides = inputs["model_strides"]
    return float(strides[1] if len(strides) > 1 else strides[0])


@pytest.mark.parametrize("case", golden_cases())
def test_tal_mmdet_equals_mmdet(case: str) -> None:
    inputs, ref = golden_inputs(case), golden_outputs(case, "tal_mmdet")
    topk = int(assigner_goldens()[f"{case}__tal_mmdet_topk"])  # 4 for reference.md 6.3's case, else TOOD's 13
    a = assign_tal_mmdet(*prediction_args(inputs), topk=topk, levels=inputs["levels"])
    np.testing.assert_array_equal(a.matched_gt + 1, ref["gt_inds"])
    pos = ref["gt_inds"] > 0
    np.testing.assert_array_equal(a.label == POSITIVE, pos)
    np.testing.assert_allclose(a.assign_metric, np.where(pos, ref["assign_metrics"], 0), rtol=RTOL, atol=0)
    np.testing.assert_allclose(a.pred_iou, np.where(pos, ref["max_overlaps"], 0), rtol=RTOL, atol=0)
    np.testing.assert_allclose(a.soft_target, ref["norm_metrics"], rtol=RTOL, atol=0)
    classes = np.full(len(pos), inputs["scores"].shape[1])  # TOOD's background label is C
    classes[pos] = inputs["gt_labels"][a.matched_gt[pos]]
    np.testing.assert_array_equal(classes, ref["labels"])


@pytest.mark.parametrize("case", golden_cases())
def test_tal_ultralytics_equals_ultralytics(case: str) -> None:
    inputs, ref = golden_inputs(case), golden_outputs(case, "tal_ultralytics")
    a = assign_tal_ultralytics(*prediction_args(inputs), stride_val=_stride_val(inputs))
    fg = ref["fg_mask"]
    np.testing.assert_array_equal(a.matched_gt, np.where(fg, ref["target_gt_idx"], -1))
    np.testing.assert_allclose(a.assign_metric, np.where(fg, ref["align_metric"], 0), rtol=RTOL, atol=0)
    np.testing.assert_allclose(a.pred_iou, np.where(fg, ref["overlaps"], 0), rtol=RTOL, atol=0)
    # target_scores: one non-zero entry per positive, at the matched GT's class.
    scores = np.zeros_like(ref["target_scores"])
    rows = np.nonzero(fg)[0]
    scores[rows, inputs["gt_labels"][a.matched_gt[rows]]] = a.soft_target[rows]
    np.testing.assert_allclose(scores, ref["target_scores"], rtol=RTOL, atol=0)


def _ref63() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ii, jj = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    c = np.stack([8 * jj.ravel(), 8 * ii.ravel()], axis=1).astype(np.float32)
    level_a = np.concatenate([c - 16, c + 16], axis=1)
    ii, jj = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    c = np.stack([16 * jj.ravel(), 16 * ii.ravel()], axis=1).astype(np.float32)
    priors = np.concatenate([level_a, np.concatenate([c - 32, c + 32], axis=1)]).astype(np.float32)
    gt = np.array([[5.3, 2.7, 29.3, 18.7], [14.6, 9.5, 30.2, 29.1]], np.float32)
    scores = torch.stack([torch.linspace(0.05, 0.95, 20), torch.linspace(0.9, 0.1, 20)], 1).numpy()
    return priors, gt, scores


def test_tal_mmdet_reference_6_3() -> None:
    """reference.md 6.3 (mmdet's own code): decoded boxes = priors, topk 4, alpha 1, beta 6."""
    priors, gt, scores = _ref63()
    a = assign_tal_mmdet(priors, gt, [0, 1], scores, priors, topk=4)
    assert (a.matched_gt + 1).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 0, 0]
    expected = [0.00092941, 0.00040468, 0.00145632, 0.00060562, 0.00022008, 0.00019024]
    np.testing.assert_allclose(a.assign_metric[[6, 7, 10, 11, 14, 15]], expected, rtol=2e-5)
    assert a.num_positive.tolist() == [4, 2] and a.method == "tal_mmdet"
    # TOOD's soft target: t / (max t + 1e-7) * max IoU per GT: the best positive gets about the best IoU.
    for g in range(2):
        pos = a.matched_gt == g
        max_t, max_u = float(a.assign_metric[pos].max()), float(a.pred_iou[pos].max())
        assert a.soft_target[pos].max() == pytest.approx(max_t / (max_t + 1e-7) * max_u, rel=1e-6)
        np.testing.assert_allclose(a.soft_target[pos], a.assign_metric[pos] / (max_t + 1e-7) * max_u, rtol=1e-6)


def test_empty_gt_gives_only_easy_negatives() -> None:
    priors, _, scores = _ref63()
    for assign in (assign_tal_mmdet, assign_tal_ultralytics):
        a = assign(priors, np.zeros((0, 4)), [], scores, priors)
        assert (a.label == EASY_NEGATIVE).all() and (a.matched_gt == -1).all()
        assert a.num_positive.shape == (0,) and not a.soft_target.any() and not a.assign_metric.any()


def _scene(seed: int) -> tuple[np.ndarray, ...]:
    """A two-level grid of square anchors, random GTs, predicted boxes near the anchors, random scores."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in (8, 16):
        ys, xs = np.meshgrid(np.arange(0, 96, s), np.arange(0, 128, s), indexing="ij")
        c = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        parts.append(np.concatenate([c - 2 * s, c + 2 * s], axis=1))
    anchors = np.concatenate(parts).astype(np.float32)
    gt = random_boxes(rng, 8, 96, 128)
    gt = gt[(gt[:, 2] - gt[:, 0] > 2) & (gt[:, 3] - gt[:, 1] > 2)]
    decoded = (anchors + rng.normal(0, 4, anchors.shape)).astype(np.float32)
    scores = rng.uniform(0, 1, (len(anchors), 3)).astype(np.float32)
    labels = rng.integers(0, 3, len(gt))
    return anchors, gt, labels, scores, decoded


@pytest.mark.parametrize("seed", range(5))
def test_tal_mmdet_properties(seed: int) -> None:
    anchors, gt, labels, scores, decoded = _scene(seed)
    a = assign_tal_mmdet(anchors, gt, labels, scores, decoded)
    pos = np.nonzero(a.label == POSITIVE)[0]
    g = a.matched_gt[pos]
    centres = box_centres(anchors[pos])
    inside = np.minimum(centres - gt[g, :2], gt[g, 2:] - centres).min(axis=1)
    assert (inside > np.float32(0.01)).all()  # each positive's centre is inside its GT
    assert (a.assign_metric[pos] > 0).all() and (a.num_positive <= 13).all()
    iou = box_iou(decoded, gt)
    np.testing.assert_array_equal(a.pred_iou[pos], iou[pos, g])
    np.testing.assert_allclose(a.assign_metric[pos], scores[pos, labels[g]] * iou[pos, g] ** 6, rtol=1e-5)
    assert set(np.unique(a.label)) <= {POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE}
    np.testing.assert_array_equal(a.matched_iou[pos], box_iou(anchors, gt)[pos, g])  # the anchor's own IoU
    assert a.assign_metric[a.label != POSITIVE].sum() == 0


@pytest.mark.parametrize("seed", range(5))
def test_tal_ultralytics_properties(seed: int) -> None:
    anchors, gt, labels, scores, decoded = _scene(seed)
    a = assign_tal_ultralytics(anchors, gt, labels, scores, decoded)
    pos = np.nonzero(a.label == POSITIVE)[0]
    centres = box_centres(anchors[pos])
    w, h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    half = np.stack([np.maximum(w, 16), np.maximum(h, 16)], axis=1) / 2
    mid = (gt[:, :2] + gt[:, 2:]) / 2
    inside_any = ((centres[:, None] > mid - half) & (centres[:, None] < mid + half)).all(axis=2).any(axis=1)
    assert inside_any.all()  # every positive lies inside some (widened) GT
    for g in np.nonzero(a.num_positive)[0]:
        mine = a.matched_gt == g
        assert a.soft_target[mine].max() <= a.pred_iou[mine].max() * (1 + 1e-6)


def test_zero_metric_positive_only_in_ultralytics() -> None:
    """Ultralytics picks the top-k of the whole row, zeros included: an anchor inside the GT whose predicted box
    misses it (t = 0) is a positive there, never in mmdet (t > 0)."""
    anchors = np.array([[0, 0, 16, 16], [8, 8, 24, 24], [100, 100, 116, 116]], np.float32)
    gt = np.array([[2, 2, 30, 30]], np.float32)
    decoded = np.array([[60, 60, 70, 70], [4, 4, 28, 28], [60, 60, 70, 70]], np.float32)
    scores = np.full((3, 1), 0.5, np.float32)
    u = assign_tal_ultralytics(anchors, gt, [0], scores, decoded)
    assert u.matched_gt.tolist() == [0, 0, -1]
    assert u.assign_metric[0] == 0 and u.soft_target[0] == 0 and u.soft_target[1] > 0
    m = assign_tal_mmdet(anchors, gt, [0], scores, decoded)
    assert m.matched_gt.tolist() == [-1, 0, -1]


def test_ultralytics_widens_small_gts_to_stride_val() -> None:
    """A 4x4 GT between anchor centres: no anchor point inside it, unless its sides are widened to stride_val."""
    ys, xs = np.meshgrid(np.arange(0, 64, 8), np.arange(0, 64, 8), indexing="ij")
    c = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    anchors = np.concatenate([c - 16, c + 16], axis=1).astype(np.float32)
    gt = np.array([[26, 26, 30, 30]], np.float32)
    decoded = np.tile(gt, (len(anchors), 1))  # every prediction is the GT itself
    scores = np.full((len(anchors), 2), 0.5, np.float32)
    assert assign_tal_ultralytics(anchors, gt, [1], scores, decoded, stride_val=None).num_positive.tolist() == [0]
    assert assign_tal_mmdet(anchors, gt, [1], scores, decoded).num_positive.tolist() == [0]
    widened = assign_tal_ultralytics(anchors, gt, [1], scores, decoded, stride_val=16)
    pos = np.nonzero(widened.label == POSITIVE)[0]
    assert len(pos) == 4  # the points (24 | 32, 24 | 32) inside (20, 20, 36, 36)
    assert set(map(tuple, box_centres(anchors[pos]).tolist())) == {(24, 24), (32, 24), (24, 32), (32, 32)}


def test_conflicts_follow_each_definition() -> None:
    """An anchor inside two GTs: mmdet keeps the GT whose IoU with the predicted box is higher among those that
    picked it; Ultralytics too, here, and both send the tie of two identical GTs to the first."""
    anchors = np.array([[0, 0, 32, 32]], np.float32)
    gt = np.array([[0, 0, 40, 40], [0, 0, 30, 30], [0, 0, 30, 30]], np.float32)
    decoded = np.array([[1, 1, 30, 30]], np.float32)
    scores = np.full((1, 1), 0.9, np.float32)
    for assign in (assign_tal_mmdet, assign_tal_ultralytics):
        assert assign(anchors, gt, [0, 0, 0], scores, decoded).matched_gt.tolist() == [1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": np.full((2, 1), 1.5, np.float32)}, "probabilities"),
        ({"scores": np.zeros((3, 1), np.float32)}, "scores must have shape"),
        ({"gt_labels": [3]}, "class indices"),
        ({"gt_labels": [0, 0]}, "1 GT boxes"),
        ({"decoded": np.zeros((1, 4), np.float32)}, "decoded has 1 boxes"),
    ],
)
def test_bad_inputs(kwargs: dict, match: str) -> None:
    args = {
        "anchors": np.array([[0, 0, 8, 8], [8, 0, 16, 8]], np.float32),
        "gt_boxes": np.array([[0, 0, 10, 10]], np.float32),
        "gt_labels": [0],
        "scores": np.full((2, 1), 0.5, np.float32),
        "decoded": np.array([[0, 0, 8, 8], [8, 0, 16, 8]], np.float32),
    } | kwargs
    for assign in (assign_tal_mmdet, assign_tal_ultralytics):
        with pytest.raises(ValueError, match=match):
            assign(**args)


def test_bad_parameters() -> None:
    priors, gt, scores = _ref63()
    for assign in (assign_tal_mmdet, assign_tal_ultralytics):
        with pytest.raises(ValueError, match="topk"):
            assign(priors, gt, [0, 1], scores, priors, topk=0)
    with pytest.raises(ValueError, match="stride_val"):
        assign_tal_ultralytics(priors, gt, [0, 1], scores, priors, stride_val=0)
