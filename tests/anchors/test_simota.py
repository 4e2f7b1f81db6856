"""Tests for explorer.anchors.simota: mmdet 3.3.0's SimOTAAssigner goldens (labels, IoUs, the cost matrix), the
prior mapping, dynamic-k bounds and the behaviours of the candidate rule."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.anchors.grid import AnchorConfig, generate_anchors, level_grids
from explorer.anchors.simota import SIMOTA_INF, assign_simota, prior_strides, simota_cost, simota_decision
from explorer.boxes import box_centres, box_iou
from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, POSITIVE
from tests.anchors.helpers import golden_cases, golden_inputs, golden_outputs, prediction_args, random_boxes

#: float32 rounding: mmdet's -log(IoU + eps) is vectorized, and vectorized log differs by an ulp on other CPUs.
RTOL = 3e-7


@pytest.mark.parametrize("case", golden_cases())
def test_simota_equals_mmdet(case: str) -> None:
    inputs, ref = golden_inputs(case), golden_outputs(case, "simota")
    np.testing.assert_array_equal(np.concatenate([box_centres(inputs["anchors"]), inputs["strides"]], 1), ref["priors"])
    a = assign_simota(*prediction_args(inputs), strides=inputs["strides"], levels=inputs["levels"])
    np.testing.assert_array_equal(a.matched_gt + 1, ref["gt_inds"])
    pos = ref["gt_inds"] > 0
    np.testing.assert_array_equal(a.pred_iou[pos], ref["max_overlaps"][pos])
    assert np.isin(ref["max_overlaps"][~pos], [-SIMOTA_INF, 0]).all()  # 0 on mmdet's early returns
    assert not a.pred_iou[~pos].any()
    np.testing.assert_array_equal(a.soft_target, a.pred_iou)  # YOLOX's class target: the predicted box's IoU


@pytest.mark.parametrize("case", [c for c in golden_cases() if len(golden_inputs(c)["gt"])])
def test_simota_cost_equals_mmdet(case: str) -> None:
    inputs, ref = golden_inputs(case), golden_outputs(case, "simota")
    valid_idx, cost, _ = simota_cost(*prediction_args(inputs), inputs["strides"])
    np.testing.assert_array_equal(valid_idx, np.nonzero(ref["valid"])[0])
    np.testing.assert_allclose(cost.numpy(), ref["cost"], rtol=RTOL, atol=0)


def _scene(seed: int, m: int = 10) -> dict[str, np.ndarray]:
    """torchvision RetinaNet anchors of a 160x224 input (3 sizes x 3 ratios), random GTs, predictions and scores."""
    rng = np.random.default_rng(seed)
    cfg = AnchorConfig()
    anchors, levels = generate_anchors(160, 224, cfg)
    grids = level_grids(160, 224, cfg)
    gt = random_boxes(rng, m, 160, 224)
    gt = gt[(gt[:, 2] - gt[:, 0] > 2) & (gt[:, 3] - gt[:, 1] > 2)]
    shift = rng.normal(0, 6, anchors.shape)
    return {
        "anchors": anchors,
        "levels": levels,
        "strides": prior_strides(grids),
        "gt": gt,
        "labels": rng.integers(0, 4, len(gt)),
        "scores": rng.uniform(0, 1, (len(anchors), 4)).astype(np.float32),
        "decoded": (anchors + shift).astype(np.float32),
        "grids": grids,
    }


def test_prior_strides_follow_the_levels() -> None:
    _, levels = generate_anchors(256, 256, AnchorConfig())
    expected = np.array([8, 16, 32, 64, 128], np.float32)[levels]
    np.testing.assert_array_equal(prior_strides(level_grids(256, 256, AnchorConfig())), np.stack([expected] * 2, 1))
    # torchvision's strides are integer divisions: a 160x224 input has P6 strides (h 53, w 56), P7 (80, 112).
    strides = _scene(0)["strides"]
    assert strides[-1].tolist() == [112, 80] and len(strides) == len(_scene(0)["anchors"])


@pytest.mark.parametrize("seed", range(4))
def test_simota_properties(seed: int) -> None:
    s = _scene(seed)
    args = (s["anchors"], s["gt"], s["labels"], s["scores"], s["decoded"])
    a = assign_simota(*args, strides=s["strides"], levels=s["levels"], grids=s["grids"])
    b = assign_simota(*args, strides=s["strides"], levels=s["levels"])  # dense IoU path, same result
    np.testing.assert_array_equal(a.matched_gt, b.matched_gt)
    np.testing.assert_array_equal(a.label, b.label)
    valid_idx, _, ious = simota_cost(*args, s["strides"])
    ious = ious.numpy()
    # dynamic k = max(int(sum of the 10 largest IoUs), 1), within [1, candidate_topk]
    top = -np.sort(-ious.astype(np.float64), axis=0)[:10].sum(axis=0)
    np.testing.assert_array_equal(a.dynamic_k, np.maximum(np.floor(top), 1).astype(np.int64))
    assert ((a.dynamic_k >= 1) & (a.dynamic_k <= 10)).all()
    # a GT takes dynamic_k priors; a prior taken twice stays with one GT, so positives <= sum of the ks
    assert a.num_positive.sum() <= a.dynamic_k.sum()
    pos = np.nonzero(a.label == POSITIVE)[0]
    assert np.isin(pos, valid_idx).all()  # only candidates are positives
    np.testing.assert_array_equal(a.pred_iou[pos], box_iou(s["decoded"], s["gt"])[pos, a.matched_gt[pos]])
    assert set(np.unique(a.label)) <= {POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE}
    assert a.method == "simota" and a.assign_metric is None


def test_candidate_rule_in_box_or_in_centre() -> None:
    """Candidates: a centre inside some GT box or within 2.5 strides (20 px here) of some GT centre; only pairs
    inside both escape the 100000 penalty."""
    centres = np.array([[0, 0], [100, 100], [160, 145]], np.float32)
    anchors = np.concatenate([centres - 8, centres + 8], axis=1)
    strides = np.full((3, 2), 8, np.float32)
    scores = np.full((3, 1), 0.5, np.float32)
    thin = np.array([[140, 100, 150, 190]], np.float32)  # centre (145, 145): (160, 145) is 15 px away, outside
    valid_idx, cost, _ = simota_cost(anchors, thin, np.array([0]), scores, anchors, strides)
    assert valid_idx.tolist() == [2] and float(cost[0, 0]) >= SIMOTA_INF
    big = np.array([[90, 90, 200, 200]], np.float32)  # same centre: (100, 100) inside the box only
    valid_idx, cost, _ = simota_cost(anchors, big, np.array([0]), scores, anchors, strides)
    assert valid_idx.tolist() == [1, 2]
    assert float(cost[0, 0]) >= SIMOTA_INF > float(cost[1, 0])
    a = assign_simota(anchors, big, [0], scores, anchors, strides=strides)
    assert a.matched_gt.tolist() == [-1, -1, 0]  # dynamic k = 1 (IoUs sum < 2): the cheapest, inside both


def test_gt_without_candidates_of_its_own_still_takes_positives() -> None:
    """A GT no prior centre lies in (2x2 between centres) pays the 100000 penalty on every candidate, yet takes
    its dynamic k cheapest ones: SimOTA leaves no GT without positives while some candidate exists."""
    inputs = golden_inputs("no_candidate")
    a = assign_simota(*prediction_args(inputs), strides=inputs["strides"])
    _, cost, _ = simota_cost(*prediction_args(inputs), inputs["strides"])
    assert (cost[:, 0] >= SIMOTA_INF).all()
    assert a.num_positive[0] == a.dynamic_k[0] == 1


def test_empty_and_candidate_free() -> None:
    inputs = golden_inputs("all_outside")
    a = assign_simota(*prediction_args(inputs), strides=inputs["strides"])
    assert a.num_positive.tolist() == [0, 0] and a.dynamic_k.tolist() == [0, 0] and a.no_positive.all()
    e = assign_simota(
        inputs["anchors"], np.zeros((0, 4)), [], inputs["scores"], inputs["decoded"], strides=inputs["strides"]
    )
    assert (e.label == EASY_NEGATIVE).all() and e.dynamic_k.shape == (0,)


def test_bad_strides() -> None:
    anchors = np.array([[0, 0, 8, 8]], np.float32)
    with pytest.raises(ValueError, match="strides"):
        assign_simota(anchors, anchors, [0], np.full((1, 1), 0.5), anchors, strides=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="strides"):
        assign_simota(anchors, anchors, [0], np.full((1, 1), 0.5), anchors, strides=np.ones((2, 2)))


@pytest.mark.parametrize("seed", range(6))
def test_fast_matching_equals_mmdet_literal(seed: int) -> None:
    """The default path (only the deciding cost entries) against mmdet's steps run literally (``dense=True``), on
    scenes with ties (the 9 anchors of a location share a prediction and the scores take 3 values, every other
    seed) and tiny GTs (fewer in-both candidates than their k)."""
    s = _scene(seed, m=14)
    rng = np.random.default_rng(100 + seed)
    gt = np.concatenate([s["gt"], np.array([[50, 50, 53, 52], [3, 100, 7, 104]], np.float32)])
    labels = np.concatenate([s["labels"], [1, 2]])
    scores, decoded = s["scores"], s["decoded"]
    if seed % 2:
        decoded = np.repeat(decoded[::9], 9, axis=0)
        scores = rng.choice(np.array([0.2, 0.5, 0.8], np.float32), size=scores.shape)
    args = (s["anchors"], gt, labels, scores, decoded, s["strides"])
    fast, literal = simota_decision(*args), simota_decision(*args, dense=True)
    for key in ("matched", "pred_iou", "dynamic_k"):
        np.testing.assert_array_equal(fast[key], literal[key])
    assert (fast["matched"] >= 0).sum() > 10
