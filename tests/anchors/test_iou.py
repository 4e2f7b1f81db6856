"""Tests for explorer.anchors.iou: the reference IoU values and bitwise parity with torchvision's box_iou."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchvision.ops import box_iou as tv_box_iou

from explorer.anchors import iou
from explorer.anchors.iou import box_iou


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
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (50, 2))], axis=1).astype(np.float32)
    full = box_iou(boxes, boxes[:7])
    monkeypatch.setattr(iou, "CHUNK_PAIRS", 10)
    np.testing.assert_array_equal(box_iou(boxes, boxes[:7]), full)


def test_docstring_examples() -> None:
    assert doctest.testmod(iou).failed == 0
