"""Tests for explorer.anchors.stats: per-level label counts, the positive-threshold sweep, best possible recall."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from explorer.anchors import stats
from explorer.anchors.grid import AnchorConfig, generate_anchors, level_grids
from explorer.anchors.iou import sparse_iou_grid
from explorer.anchors.max_iou import assign_max_iou
from explorer.anchors.stats import best_possible_recall, per_level_counts, threshold_sweep


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


def test_docstring_examples() -> None:
    assert doctest.testmod(stats).failed == 0
