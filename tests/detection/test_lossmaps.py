"""Tests of explorer.detection.lossmaps: the per-anchor loss breakdown from the model's dense outputs, and its
labels against torchvision's own Matcher at IoU threshold ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_iou

from explorer.detection.demo_model import DEMO_ANCHOR_SIZES, DEMO_ASPECT_RATIOS, DEMO_MAX_SIZE, DEMO_MIN_SIZE
from explorer.detection.lossmaps import level_loss_maps, loss_breakdown
from explorer.detection.outputs import DenseOutputs
from explorer.labels import IGNORED, POSITIVE


def test_loss_shares_sum_to_one_and_focal_matches_torchvision(result, scene, demo):
    dense = result.dense
    br = loss_breakdown(dense, scene.gt_boxes, scene.gt_labels)
    shares = br.shares()
    counted = shares[shares["group"] != "ignored"]
    for kind in ("CE", "Focal", "QFL"):
        assert counted[f"{kind} share"].sum() == pytest.approx(1.0, abs=1e-9)
    assert int(shares["anchors"].sum()) == len(dense.levels)
    assert (br.group == POSITIVE).sum() > 0
    assert br.per_anchor["focal"].sum() < br.per_anchor["ce"].sum()  # focal <= CE anchor by anchor

    # torchvision's own classification loss on the same dense outputs (Matcher + compute_loss) equals ours.
    gt = dense.to_input(scene.gt_boxes)
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    matched = matcher(box_iou(torch.from_numpy(gt), dense.anchors))
    targets = [{"boxes": torch.from_numpy(gt), "labels": torch.from_numpy(scene.gt_labels)}]
    head = {"cls_logits": dense.cls_logits[None]}
    tv = demo.model.head.classification_head.compute_loss(targets, head, [matched])
    assert br.totals()["focal"] == pytest.approx(float(tv), rel=1e-5)
    assert int((matched >= 0).sum()) == int(br.normalizer)


def test_focal_with_gamma_zero_and_no_alpha_is_ce(result, scene):
    br = loss_breakdown(result.dense, scene.gt_boxes, scene.gt_labels, alpha=-1.0, gamma=0.0)
    np.testing.assert_allclose(br.per_anchor["focal"], br.per_anchor["ce"], rtol=1e-6)
    under_ce = br.shares().set_index("group")
    assert (
        under_ce.loc["easy negative", "CE share"]
        > loss_breakdown(result.dense, scene.gt_boxes, scene.gt_labels)
        .shares()
        .set_index("group")
        .loc["easy negative", "Focal share"]
    )


def test_loss_breakdown_rejects_labels_outside_the_model(result):
    with pytest.raises(ValueError, match="label 40 is outside the model's 9 classes"):
        loss_breakdown(result.dense, np.array([[0, 0, 10, 10]]), np.array([40]))


def test_no_ground_truth_means_all_easy_negatives(result):
    br = loss_breakdown(result.dense, np.zeros((0, 4)), np.zeros(0))
    assert set(br.group.tolist()) == {0} and br.normalizer == 1.0
    assert br.shares().set_index("group").loc["easy negative", "CE share"] == pytest.approx(1.0)


def test_level_loss_maps_sum_the_groups_per_cell(result, scene):
    dense = result.dense
    br = loss_breakdown(dense, scene.gt_boxes, scene.gt_labels)
    maps = level_loss_maps(dense, br, "focal")
    assert [next(iter(m.values())).shape for m in maps] == dense.grid_sizes
    total = sum(float(v.sum(dtype=np.float64)) for m in maps for v in m.values())
    assert total == pytest.approx(float(br.per_anchor["focal"].sum(dtype=np.float64)), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss kind"):
        level_loss_maps(dense, br, "l1")


# ----------------------------------------------------------------------------------------------- threshold ties

_TRANSFORM = GeneralizedRCNNTransform(DEMO_MIN_SIZE, DEMO_MAX_SIZE, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
_STRIDES = (8, 16, 32, 64, 128)


def _torchvision_frame(height: int, width: int, gt_original: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list]:
    """torchvision's view of an image of ``height`` x ``width`` with ``gt_original`` boxes (the demo model's transform
    and anchor generator): (GT scaled by ``resize_boxes``, anchors, feature grid sizes, input size)."""
    targets = [{"boxes": torch.from_numpy(gt_original), "labels": torch.ones(len(gt_original), dtype=torch.int64)}]
    images, scaled = _TRANSFORM.eval()([torch.zeros(3, height, width)], targets)
    ph, pw = images.tensors.shape[-2:]
    grids, gh, gw = [], ph // _STRIDES[0], pw // _STRIDES[0]
    for _ in _STRIDES:  # ResNet + FPN + P6/P7: P3 = padded / 8, each next level ceil(previous / 2)
        grids.append((gh, gw))
        gh, gw = (gh + 1) // 2, (gw + 1) // 2
    features = [torch.zeros(1, 1, h, w) for h, w in grids]
    anchors = AnchorGenerator(DEMO_ANCHOR_SIZES, (DEMO_ASPECT_RATIOS,) * len(DEMO_ANCHOR_SIZES))(images, features)[0]
    return scaled[0]["boxes"], anchors, grids, tuple(int(s) for s in images.image_sizes[0])


def _matcher_codes(gt_input: torch.Tensor, anchors: torch.Tensor) -> np.ndarray:
    """torchvision RetinaNet's labels: matched GT index, -1 below 0.4, -2 between thresholds."""
    return Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(gt_input, anchors)).numpy()


def _float64_ratio_scaling(gt_original: np.ndarray, image_hw: tuple[int, int], input_hw: tuple[int, int]) -> np.ndarray:
    """The former ``DenseOutputs.to_input``: divide by the float64 ratio original / input (rounded to float32)."""
    sx, sy = image_hw[1] / input_hw[1], image_hw[0] / input_hw[0]
    return (gt_original / np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)


def _find_tie(rng: np.random.Generator, trials: int = 400) -> tuple[int, int, np.ndarray] | None:
    """An image size and a GT box at an IoU tie (0.5 or 0.4 with some anchor, in input pixels) whose labels differ
    between torchvision's float32 scaling and the float64-ratio scaling."""
    for _ in range(trials):
        height, width = (int(v) for v in rng.integers(100, 1200, size=2))
        _, anchors, _, input_hw = _torchvision_frame(height, width, np.zeros((0, 4), np.float32))
        x1, y1, x2, y2 = anchors[int(rng.integers(len(anchors)))].tolist()
        stretch = float(rng.choice([2.0, 2.5]))  # IoU with that anchor exactly 1 / stretch: 0.5 or 0.4
        gt_input = np.array([[x1, y1, x1 + stretch * (x2 - x1), y2]], np.float32)
        ry, rx = (np.float32(i) / np.float32(o) for i, o in zip(input_hw, (height, width), strict=True))
        gt_original = (gt_input / np.array([rx, ry, rx, ry], np.float32)).astype(np.float32)
        tv_gt, anchors, _, _ = _torchvision_frame(height, width, gt_original)
        old = torch.from_numpy(_float64_ratio_scaling(gt_original, (height, width), input_hw))
        if not np.array_equal(_matcher_codes(tv_gt, anchors), _matcher_codes(old, anchors)):
            return height, width, gt_original
    return None


def _dense_outputs(height: int, width: int, gt_original: np.ndarray, num_classes: int = 3) -> DenseOutputs:
    """Dense outputs of torchvision's anchors for the image size (zero logits and deltas: only the labels matter)."""
    _, anchors, grids, input_hw = _torchvision_frame(height, width, gt_original)
    a = len(DEMO_ASPECT_RATIOS) * len(DEMO_ANCHOR_SIZES[0])
    levels = torch.cat([torch.full((h * w * a,), i, dtype=torch.int64) for i, (h, w) in enumerate(grids)])
    n = len(anchors)
    return DenseOutputs(
        cls_logits=torch.zeros(n, num_classes),
        bbox_deltas=torch.zeros(n, 4),
        anchors=anchors,
        levels=levels,
        grid_sizes=grids,
        anchors_per_location=a,
        input_size=input_hw,
        image_size=(height, width),
    )


def test_labels_equal_torchvisions_matcher_at_an_iou_threshold_tie():
    """At an IoU tie, one ulp in the scaled GT flips a label: the Live detections path must scale GT exactly as
    torchvision's ``resize_boxes`` (float32 ratio input / original, multiplied), not divide by a float64 ratio."""
    found = _find_tie(np.random.default_rng(20261203))
    assert found is not None, "no threshold tie where the float64-ratio scaling changes a label was found"
    height, width, gt_original = found
    dense = _dense_outputs(height, width, gt_original)
    assert dense.anchors.shape[0] == int(np.sum(dense.level_counts))
    tv_gt, anchors, _, _ = _torchvision_frame(height, width, gt_original)
    expected = _matcher_codes(tv_gt, anchors)

    breakdown = loss_breakdown(dense, gt_original, np.ones(1, np.int64))
    group = breakdown.group
    ours = np.where(group == POSITIVE, breakdown.assignment.matched_gt, np.where(group == IGNORED, -2, -1))
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(dense.to_input(gt_original), tv_gt.numpy())
