"""Tests of explorer.detection.lossmaps: the per-anchor loss breakdown from the model's dense outputs, and its
labels against torchvision's own Matcher at IoU threshold ties."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_iou

from explorer.detection.demo_model import DEMO_ANCHOR_SIZES, DEMO_ASPECT_RATIOS, DEMO_MAX_SIZE, DEMO_MIN_SIZE
from explorer.detection.detector import DenseOutputs
from explorer.detection.groundtruth import loss_breakdown
from explorer.labels import IGNORED, POSITIVE

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
