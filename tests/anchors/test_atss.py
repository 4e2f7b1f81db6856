"""Tests for explorer.anchors.atss: mmdet's ATSSAssigner reference (reference.md 6.2), grid path equals dense."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.anchors.atss import assign_atss
from explorer.anchors.grid import AnchorConfig, LevelGrid, generate_anchors, level_grids
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, POSITIVE
from tests.anchors.helpers import random_boxes


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
    gt = random_boxes(np.random.default_rng(5), 15, 480, 640)
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
