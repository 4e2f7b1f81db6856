"""Tests for explorer.boxes: each computation bit for bit against torchvision (box_iou, resize rule, resize_boxes,
the references' xywh -> xyxy) and the ragged ranges against a loop."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import box_iou as tv_box_iou

from explorer import boxes
from explorer.boxes import box_iou


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
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (50, 2))
    many = np.concatenate([xy, xy + rng.uniform(1, 30, (50, 2))], axis=1).astype(np.float32)
    full = box_iou(many, many[:7])
    monkeypatch.setattr(boxes, "CHUNK_PAIRS", 10)
    np.testing.assert_array_equal(box_iou(many, many[:7]), full)


def test_docstring_examples() -> None:
    assert doctest.testmod(boxes).failed == 0


def test_iou_pairs_and_coords_equal_torchvision_diagonal() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 500, (300, 2)).astype(np.float32)
    a = np.concatenate([xy, xy + rng.uniform(0.1, 200, (300, 2)).astype(np.float32)], axis=1)
    b = a + rng.normal(0, 20, a.shape).astype(np.float32)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    theirs = tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy().diagonal()
    np.testing.assert_array_equal(boxes.iou_pairs(a, b), theirs)
    np.testing.assert_array_equal(boxes.iou_coords(*a.T, *b.T), theirs)
    inter = boxes.intersection(a, b)
    union_scratch = boxes.area(*a.T)
    np.testing.assert_array_equal(boxes.iou_from_areas_(inter, union_scratch, boxes.area(*b.T)), theirs)


def test_xywh_to_xyxy_adds_in_float32_like_torchvisions_references() -> None:
    """``ConvertCocoPolysToMask``: ``boxes[:, 2:] += boxes[:, :2]`` on a float32 tensor. A float64 add then a
    rounding differs by one ulp on some of these boxes, which is why the sum is done in float32."""
    rng = np.random.default_rng(5)
    xywh = np.round(rng.uniform(0, 640, (2000, 4)), 2)
    ref = torch.as_tensor(xywh.tolist(), dtype=torch.float32).reshape(-1, 4)
    ref[:, 2:] += ref[:, :2]
    ours = boxes.xywh_to_xyxy(xywh.tolist())
    np.testing.assert_array_equal(ours, ref.numpy())
    f64 = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    assert (f64 != ours).any(), "no box here separates the float32 and float64 sums: the test proves nothing"
    assert boxes.xywh_to_xyxy([]).shape == (0, 4)


@pytest.mark.parametrize("min_size, max_size", [(800, 1333), (512, 512), (600, 1000)])
def test_resized_hw_and_scale_boxes_equal_torchvisions_transform(min_size: int, max_size: int) -> None:
    rng = np.random.default_rng(min_size)
    transform = GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3)
    for h, w in rng.integers(20, 2500, (10, 2)).tolist():
        target = {"boxes": torch.tensor([[1.5, 2.25, w - 3.1, h - 0.7]]), "labels": torch.tensor([1])}
        images, targets = transform([torch.zeros(3, h, w)], [target])
        assert boxes.resized_hw(h, w, min_size, max_size) == tuple(images.image_sizes[0])
        scaled = boxes.scale_boxes(target["boxes"].numpy(), (h, w), boxes.resized_hw(h, w, min_size, max_size))
        np.testing.assert_array_equal(scaled, targets[0]["boxes"].numpy())


def test_scale_boxes_matches_resize_boxes_and_per_box_ratios() -> None:
    b = np.array([[10.5, 20.25, 300.0, 400.0], [0, 0, 640, 480]], np.float32)
    ours = boxes.scale_boxes(b, (480, 640), (800, 1066))
    np.testing.assert_array_equal(ours, resize_boxes(torch.from_numpy(b), [480, 640], [800, 1066]).numpy())
    rh, rw = boxes.scale_ratios(
        np.array([480, 333]), np.array([640, 517]), np.array([800, 800]), np.array([1066, 1242])
    )
    per_box = boxes.apply_ratios(b, rh, rw)
    np.testing.assert_array_equal(per_box[0], ours[0])
    np.testing.assert_array_equal(per_box[1], boxes.scale_boxes(b[1:], (333, 517), (800, 1242))[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 6)), max_size=12))
def test_ragged_arange_equals_a_loop(runs: list[tuple[int, int]]) -> None:
    starts = np.array([s for s, _ in runs], np.int64)
    lengths = np.array([n for _, n in runs], np.int64)
    expected = [v for s, n in runs for v in range(s, s + n)]
    assert boxes.ragged_arange(starts, lengths).tolist() == expected


def test_box_iou_union_eps_is_mmdets_floor() -> None:
    """``union_eps`` floors the union as mmdet's bbox_overlaps (eps 1e-6): equal wherever the union is larger, 0
    instead of NaN for two empty boxes."""
    a = np.array([[0, 0, 10, 10], [5, 5, 5, 5]], np.float32)
    b = np.array([[2, 3, 12, 9], [5, 5, 5, 5]], np.float32)
    plain, floored = box_iou(a, b), box_iou(a, b, union_eps=boxes.MMDET_IOU_EPS)
    np.testing.assert_array_equal(floored[0], plain[0])
    assert np.isnan(plain[1, 1]) and floored[1, 1] == 0


def test_box_centres_float32() -> None:
    c = boxes.box_centres(np.array([[0, 0, 3, 5], [1e8, 0, 1e8 + 3, 1]], np.float32))
    assert c.dtype == np.float32
    assert c[0].tolist() == [1.5, 2.5] and c[1, 0] == np.float32((np.float32(1e8) + np.float32(1e8 + 3)) / 2)


def _float32_boxes(rng: np.random.Generator, n: int, side: float = 5000.0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float32 xyxy inside images of random whole sizes (n, 2)."""
    wh = rng.integers(1, int(side), (n, 2)).astype(np.float64)
    x1, y1 = rng.random(n) * wh[:, 0], rng.random(n) * wh[:, 1]
    x2 = x1 + rng.random(n) * (wh[:, 0] - x1)
    y2 = y1 + rng.random(n) * (wh[:, 1] - y1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32), wh


def test_cxcywhn_golden_and_empty() -> None:
    assert boxes.cxcywhn_to_xyxy(np.zeros((0, 4)), 10, 10).shape == (0, 4)
    got = boxes.cxcywhn_to_xyxy([[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.2, 0.4]], [200, 100], [100, 50])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([[80, 30, 120, 70], [0, 0, 20, 20]], np.float32))


def test_yolo_coordinates_read_back_bit_for_bit() -> None:
    """xyxy -> cxcywhn (float64, written with repr) -> cxcywhn_to_xyxy gives the same float32 box: 200,000 random
    boxes, whole-image boxes and boxes at the origin."""
    b, wh = _float32_boxes(np.random.default_rng(5), 200_000)
    b[:1000, :2] = 0
    b[1000:2000] = np.concatenate([np.zeros((1000, 2)), wh[1000:2000]], axis=1)
    c = boxes.xyxy_to_cxcywhn(b, wh[:, 0], wh[:, 1])
    text = [[float(repr(float(v))) for v in row] for row in c[:2000]]
    np.testing.assert_array_equal(boxes.cxcywhn_to_xyxy(text, wh[:2000, 0], wh[:2000, 1]), b[:2000])
    np.testing.assert_array_equal(boxes.cxcywhn_to_xyxy(c, wh[:, 0], wh[:, 1]), b)


def test_xyxy_to_xywh_inverts_coco_boxes_exactly() -> None:
    """Boxes read from COCO xywh (float32 x + w) come back from xyxy_to_xywh exactly; arbitrary float32 boxes
    cannot all (the float32 sum rounds ties to even), which is why the converter counts them."""
    b, _ = _float32_boxes(np.random.default_rng(6), 200_000)
    coco = boxes.xywh_to_xyxy(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1))
    np.testing.assert_array_equal(boxes.xywh_to_xyxy(boxes.xyxy_to_xywh(coco)), coco)
    assert (boxes.xywh_to_xyxy(boxes.xyxy_to_xywh(b)) != b).any(axis=1).mean() < 0.1
    whole = np.array([[0, 0, 640, 480], [47, 238, 195, 371]], np.float32)  # integer corners (VOC)
    np.testing.assert_array_equal(boxes.xyxy_to_xywh(whole), [[0, 0, 640, 480], [47, 238, 148, 133]])
