"""Tests for explorer.anchors.assign: reference vectors, Matcher parity (hypothesis), full-pipeline parity, ATSS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou as tv_box_iou

from explorer.anchors.assign import (
    SparseIoU,
    assign_atss,
    assign_from_sparse,
    assign_max_iou,
    best_possible_recall,
    box_iou,
    match_iou_matrix,
    per_level_counts,
    sparse_iou_dense,
    sparse_iou_grid,
    threshold_sweep,
)
from explorer.anchors.grid import AnchorConfig, LevelGrid, generate_anchors, level_grids
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, LABEL_NAMES, POSITIVE

Q61 = np.array(
    [
        [0.10, 0.60, 0.45, 0.30, 0.00, 0.20],
        [0.35, 0.15, 0.42, 0.38, 0.00, 0.10],
        [0.05, 0.00, 0.00, 0.20, 0.30, 0.30],
    ],
    dtype=np.float32,
)


def _codes(a) -> np.ndarray:
    """An Assignment as torchvision Matcher codes."""
    return np.where(a.label == POSITIVE, a.matched_gt, np.where(a.label == IGNORED, -2, -1))


def _tv_matcher(q: np.ndarray, low_quality: bool, pos: float = 0.5, neg: float = 0.4) -> np.ndarray:
    return Matcher(pos, neg, low_quality)(torch.from_numpy(q.copy())).numpy()


# ---------------------------------------------------------------- IoU


def test_box_iou_reference_7_3() -> None:
    b1 = np.array([[0, 0, 10, 10]], np.float32)
    b2 = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 10], [2, 2, 8, 8], [10, 10, 20, 30]], np.float32)
    np.testing.assert_allclose(box_iou(b1, b2)[0, :4], [1.0, 0.14285714, 0.0, 0.36], atol=1e-6)
    pairs = box_iou(np.array([[0, 0, 4, 2]]), np.array([[1, 0, 3, 4]]))
    np.testing.assert_allclose(pairs, [[0.33333333]], atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 4), (3, 4)])
def test_box_iou_empty(shape: tuple[int, int]) -> None:
    other = np.zeros(shape, np.float32)
    assert box_iou(np.zeros((0, 4)), other).shape == (0, shape[0])
    assert box_iou(np.array([[0, 0, 1, 1]]), np.zeros((0, 4))).shape == (1, 0)


def test_box_iou_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        box_iou(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        box_iou(np.array([[0, 0, np.nan, 1]]), np.zeros((1, 4)))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float32, (7, 4), elements=st.integers(0, 40).map(float)),
    arrays(np.float32, (5, 4), elements=st.integers(0, 40).map(float)),
)
def test_box_iou_bitwise_equal_to_torchvision(a: np.ndarray, b: np.ndarray) -> None:
    a = np.concatenate([np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:]) + 1], axis=1)
    b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:]) + 0.5], axis=1)
    ours = box_iou(a, b)
    theirs = tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert ((ours >= 0) & (ours <= 1)).all()
    np.testing.assert_array_equal(box_iou(b, a), ours.T)


def test_box_iou_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import explorer.anchors.assign as mod

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (50, 2))], axis=1).astype(np.float32)
    full = box_iou(boxes, boxes[:7])
    monkeypatch.setattr(mod, "_CHUNK_PAIRS", 10)
    np.testing.assert_array_equal(box_iou(boxes, boxes[:7]), full)


# ---------------------------------------------------------------- reference 6.1 / 7.4


def test_reference_6_1_torchvision() -> None:
    assert match_iou_matrix(Q61, 0.5, 0.4, low_quality=False).tolist() == [-1, 0, -2, -1, -1, -1]
    assert match_iou_matrix(Q61, 0.5, 0.4, low_quality=True).tolist() == [-1, 0, 0, -1, 2, 2]
    sp = SparseIoU.from_dense(Q61)
    a = assign_from_sparse(sp, low_quality=True)
    assert _codes(a).tolist() == [-1, 0, 0, -1, 2, 2]
    # gt1's best anchor (2, IoU .42) goes to gt0 (IoU .45): gt1 ends up with no positive.
    assert a.num_positive.tolist() == [2, 0, 2]
    assert a.no_positive.tolist() == [False, True, False]
    assert a.low_quality_only.tolist() == [False, False, True]
    assert a.low_quality.tolist() == [False, False, True, False, True, True]
    assert a.best_anchor.tolist() == [1, 2, 4]  # lowest index on ties (gt2: anchors 4 and 5)
    np.testing.assert_allclose(a.best_iou, [0.6, 0.42, 0.3])
    assert a.label.tolist() == [HARD_NEGATIVE, POSITIVE, POSITIVE, HARD_NEGATIVE, POSITIVE, POSITIVE]
    np.testing.assert_allclose(a.matched_iou, [0, 0.6, 0.45, 0, 0.3, 0.3])
    b = assign_from_sparse(sp, low_quality=False)
    assert _codes(b).tolist() == [-1, 0, -2, -1, -1, -1]
    assert b.label_counts() == {"easy negative": 0, "hard negative": 4, "ignored": 1, "positive": 1}
    assert b.num_ignored.tolist() == [1, 0, 0]


def test_reference_6_1_mmdet() -> None:
    # mmdet gt_inds [0, 1, 2, 0, 3, 3] (1-based) -> 0-based matches [-1, 0, 1, -1, 2, 2].
    assert match_iou_matrix(Q61, low_quality=True, semantics="mmdet").tolist() == [-1, 0, 1, -1, 2, 2]
    a = assign_from_sparse(SparseIoU.from_dense(Q61), semantics="mmdet")
    assert _codes(a).tolist() == [-1, 0, 1, -1, 2, 2]
    assert a.num_positive.tolist() == [1, 1, 2]
    np.testing.assert_allclose(a.matched_iou, [0, 0.6, 0.42, 0, 0.3, 0.3])
    assert a.low_quality_only.tolist() == [False, True, True]
    # match_low_quality=False: mmdet [0, 1, -1, 0, 0, 0].
    b = assign_from_sparse(SparseIoU.from_dense(Q61), semantics="mmdet", low_quality=False)
    assert _codes(b).tolist() == [-1, 0, -2, -1, -1, -1]


def test_reference_7_4_edge_cases() -> None:
    q2 = np.array([[0, 0, 0], [0.7, 0, 0.2]], np.float32)
    assert match_iou_matrix(q2, low_quality=False).tolist() == [1, -1, -1]
    assert match_iou_matrix(q2, low_quality=True).tolist() == [1, 0, 1]
    sp2 = SparseIoU.from_dense(q2)
    assert _codes(assign_from_sparse(sp2, low_quality=False)).tolist() == [1, -1, -1]
    assert _codes(assign_from_sparse(sp2, low_quality=True)).tolist() == [1, 0, 1]
    q3 = np.array([[0.5, 0.4, 0.3999]], np.float32)
    assert match_iou_matrix(q3, low_quality=False).tolist() == [0, -2, -1]
    a3 = assign_from_sparse(SparseIoU.from_dense(q3), low_quality=False)
    assert a3.label.tolist() == [POSITIVE, IGNORED, HARD_NEGATIVE]


def test_no_gt_all_easy_negatives() -> None:
    anchors, levels = generate_anchors(64, 64, AnchorConfig(sizes=((32,), (64,)), strides=(8, 16), resize=False))
    a = assign_max_iou(anchors, np.zeros((0, 4)), levels=levels)
    assert (a.label == EASY_NEGATIVE).all() and (a.matched_gt == -1).all() and a.num_gt == 0
    assert a.label_counts()["easy negative"] == 240
    assert np.isnan(best_possible_recall(a.best_iou))


def test_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="neg_thresh"):
        assign_from_sparse(SparseIoU.from_dense(Q61), pos_thresh=0.3, neg_thresh=0.4)
    with pytest.raises(ValueError, match="semantics"):
        match_iou_matrix(Q61, semantics="yolo")
    assert LABEL_NAMES[POSITIVE] == "positive"


# ---------------------------------------------------------------- Matcher parity (hypothesis)

_values = st.sampled_from([0.0, 0.0, 0.1, 0.3, 0.39999, 0.4, 0.45, 0.5, 0.5, 0.7, 1.0])


@settings(max_examples=150, deadline=None)
@given(
    st.tuples(st.integers(1, 5), st.integers(1, 12)).flatmap(lambda mn: arrays(np.float32, mn, elements=_values)),
    st.booleans(),
    st.sampled_from([(0.5, 0.4), (0.5, 0.5), (0.7, 0.3)]),
)
def test_matcher_parity_random_matrices(q: np.ndarray, low_quality: bool, thresholds: tuple[float, float]) -> None:
    pos, neg = thresholds
    expected = _tv_matcher(q, low_quality, pos, neg)
    assert match_iou_matrix(q, pos, neg, low_quality=low_quality).tolist() == expected.tolist()
    a = assign_from_sparse(SparseIoU.from_dense(q), pos_thresh=pos, neg_thresh=neg, low_quality=low_quality)
    assert _codes(a).tolist() == expected.tolist()
    np.testing.assert_array_equal(a.max_iou, q.max(axis=0))
    np.testing.assert_array_equal(a.best_iou, q.max(axis=1))
    # Easy negatives are exactly the non-positive anchors that overlap nothing.
    assert ((a.label == EASY_NEGATIVE) == ((q.max(axis=0) == 0) & (expected < 0))).all()
    assert a.num_positive.sum() == (a.label == POSITIVE).sum()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (3, 8), elements=_values), st.booleans())
def test_mmdet_sparse_equals_dense(q: np.ndarray, low_quality: bool) -> None:
    dense = match_iou_matrix(q, low_quality=low_quality, semantics="mmdet")
    a = assign_from_sparse(SparseIoU.from_dense(q), low_quality=low_quality, semantics="mmdet")
    assert _codes(a).tolist() == dense.tolist()


def test_matcher_parity_zero_rows_and_columns() -> None:
    q = np.array([[0, 0.6, 0, 0], [0, 0, 0, 0], [0, 0.2, 0.2, 0]], np.float32)
    for lq in (False, True):
        expected = _tv_matcher(q, lq)
        assert _codes(assign_from_sparse(SparseIoU.from_dense(q), low_quality=lq)).tolist() == expected.tolist()


# ---------------------------------------------------------------- full pipeline vs torchvision


def _random_boxes(rng: np.random.Generator, m: int, h: int, w: int) -> np.ndarray:
    s = np.exp(rng.uniform(np.log(4), np.log(0.8 * min(h, w)), m))
    ar = np.exp(rng.uniform(-0.8, 0.8, m))
    bw, bh = s / np.sqrt(ar), s * np.sqrt(ar)
    cx, cy = rng.uniform(0, w, m), rng.uniform(0, h, m)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes.clip(0, [w, h, w, h]).astype(np.float32)


@pytest.mark.parametrize(
    ("seed", "hw", "convention", "m"),
    [(0, (800, 1333), "torchvision", 60), (1, (640, 480), "torchvision", 25), (2, (333, 517), "mmdet", 12),
     (3, (800, 800), "detectron2", 30), (4, (800, 1066), "torchvision", 1)],
)  # fmt: skip
def test_full_pipeline_parity(seed: int, hw: tuple[int, int], convention: str, m: int) -> None:
    from explorer.anchors.grid import default_config

    cfg = default_config(convention)
    anchors, levels = generate_anchors(*hw, cfg)
    grids = level_grids(*hw, cfg)
    rng = np.random.default_rng(seed)
    gt = _random_boxes(rng, m, *hw)
    gt = gt[(gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])]
    gt[0] = [10, 10, 42, 42]  # exactly a P3 anchor shifted: creates IoU ties and an IoU of 1
    q = tv_box_iou(torch.from_numpy(gt), torch.from_numpy(anchors)).numpy()
    sp = sparse_iou_grid(anchors, gt, grids)
    np.testing.assert_array_equal(sp.to_dense(), q)
    for lq in (True, False):
        a = assign_max_iou(anchors, gt, low_quality=lq, levels=levels, grids=grids)
        expected = _tv_matcher(q, lq)
        np.testing.assert_array_equal(_codes(a), expected)
        np.testing.assert_array_equal(a.max_iou, q.max(axis=0))
        np.testing.assert_array_equal(a.best_iou, q.max(axis=1))
        first_best = np.array([np.nonzero(row == row.max())[0][0] for row in q])
        np.testing.assert_array_equal(a.best_anchor, first_best)
        np.testing.assert_array_equal(a.best_level, levels[first_best])
    # The dense fallback gives the same pairs.
    d = sparse_iou_dense(anchors, gt)
    np.testing.assert_array_equal(d.to_dense(), q)


def test_per_level_counts_and_sweep() -> None:
    cfg = AnchorConfig()
    anchors, levels = generate_anchors(800, 800, cfg)
    grids = level_grids(800, 800, cfg)
    gt = np.array([[100, 100, 164, 164], [400, 300, 700, 500], [10, 700, 22, 712]], np.float32)
    a = assign_max_iou(anchors, gt, levels=levels, grids=grids)
    table = per_level_counts(a, 5)
    assert table["anchors"].tolist() == [90_000, 22_500, 5_625, 1_521, 441]
    total = table["positive"] + table["ignored"] + table["hard negative"] + table["easy negative"]
    np.testing.assert_array_equal(total, table["anchors"])
    assert table["positive"].sum() == a.num_positive.sum()
    sp = sparse_iou_grid(anchors, gt, grids)
    sweep = threshold_sweep(sp, (0.3, 0.5, 0.7))
    assert sweep["neg_thresh"].tolist() == [0.3, 0.4, 0.4]
    assert sweep["pos_per_gt"].shape == (3, 3)
    np.testing.assert_array_equal(sweep["pos_per_gt"][1], a.num_positive)
    # More positives at a lower threshold, never fewer.
    assert (np.diff(sweep["num_positive"]) <= 0).all()
    # The 12x12 box has no anchor at IoU >= 0.5: only a low-quality match.
    assert a.low_quality_only[2] and a.best_iou[2] < 0.5
    assert best_possible_recall(a.best_iou, 0.5) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- ATSS (reference 6.2)


def _atss_fixture() -> tuple[np.ndarray, np.ndarray, list[LevelGrid], np.ndarray]:
    ii, jj = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    c = np.stack([8 * jj.ravel(), 8 * ii.ravel()], axis=1).astype(np.float32)
    level_a = np.concatenate([c - 16, c + 16], axis=1)
    ii, jj = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    c = np.stack([16 * jj.ravel(), 16 * ii.ravel()], axis=1).astype(np.float32)
    level_b = np.concatenate([c - 32, c + 32], axis=1)
    priors = np.concatenate([level_a, level_b]).astype(np.float32)
    levels = np.array([0] * 16 + [1] * 4, np.int64)
    grids = [
        LevelGrid(3, (4, 4), (8, 8), np.array([[-16.0, -16, 16, 16]])),
        LevelGrid(4, (2, 2), (16, 16), np.array([[-32.0, -32, 32, 32]])),
    ]
    gt = np.array([[5.3, 2.7, 29.3, 18.7], [14.6, 9.5, 30.2, 29.1]], np.float32)
    return priors, levels, grids, gt


@pytest.mark.parametrize("use_grid", [False, True])
def test_atss_reference_6_2(use_grid: bool) -> None:
    priors, levels, grids, gt = _atss_fixture()
    g = grids if use_grid else None
    a3 = assign_atss(priors, gt, levels, topk=3, grids=g)
    expected3 = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert (a3.matched_gt + 1).tolist() == expected3
    np.testing.assert_allclose(a3.threshold, [0.3704, 0.3093], atol=1e-4)
    assert a3.no_positive.tolist() == [False, True]
    a9 = assign_atss(priors, gt, levels, topk=9, grids=g)
    expected9 = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 2, 2, 0, 0, 0, 0]
    assert (a9.matched_gt + 1).tolist() == expected9
    np.testing.assert_allclose(a9.threshold, [0.3441, 0.2743], atol=1e-4)
    assert a9.num_positive.tolist() == [2, 3]
    # Prior 10 (IoU .375 with gt0, .2986 with gt1) goes to gt0; no ignore band in ATSS.
    assert a9.matched_gt[10] == 0 and (a9.label != IGNORED).all()
    assert set(np.unique(a9.label)) <= {POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE}


def test_atss_grid_equals_dense_on_real_grid() -> None:
    cfg = AnchorConfig(sizes=((64,), (128,), (256,), (512,), (1024,)), aspect_ratios=(1.0,))
    anchors, levels = generate_anchors(480, 640, cfg)
    grids = level_grids(480, 640, cfg)
    gt = _random_boxes(np.random.default_rng(5), 15, 480, 640)
    gt = gt[(gt[:, 2] - gt[:, 0] > 1) & (gt[:, 3] - gt[:, 1] > 1)]
    a = assign_atss(anchors, gt, levels, grids=grids)
    b = assign_atss(anchors, gt, levels)
    np.testing.assert_array_equal(a.matched_gt, b.matched_gt)
    np.testing.assert_array_equal(a.threshold, b.threshold)
    assert (a.num_positive > 0).sum() >= len(gt) // 2
    # Every positive centre lies inside its GT.
    pos = np.nonzero(a.label == POSITIVE)[0]
    centres = (anchors[pos, :2] + anchors[pos, 2:]) / 2
    boxes = gt[a.matched_gt[pos]]
    assert ((centres > boxes[:, :2]) & (centres < boxes[:, 2:])).all()
