"""Tests for explorer.anchors.max_iou: reference vectors, Matcher parity (hypothesis), full-pipeline parity."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou as tv_box_iou

from explorer.anchors import max_iou
from explorer.anchors.grid import AnchorConfig, generate_anchors, level_grids
from explorer.anchors.iou import SparseIoU, sparse_iou_dense, sparse_iou_grid
from explorer.anchors.max_iou import assign_from_sparse, assign_max_iou, match_iou_matrix
from explorer.anchors.stats import best_possible_recall
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, LABEL_NAMES, POSITIVE
from tests.anchors.helpers import random_boxes

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
    gt = random_boxes(rng, m, *hw)
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


def test_docstring_examples() -> None:
    assert doctest.testmod(max_iou).failed == 0
