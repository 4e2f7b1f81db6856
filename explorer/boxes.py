"""Exact box arithmetic, written once: COCO xywh -> xyxy, IoU in torchvision's float32 order, torchvision's resize
rule and its float32 box scaling, ragged ranges.

Threshold decisions (IoU >= 0.5, < 0.4) are made on float32 values, so one ulp decides a label at a tie. Every
module that needs one of these computations calls the function here; the tests check each against torchvision
bit for bit (``tests/test_boxes.py``).

- :func:`xywh_to_xyxy`: ``x2 = x + w`` added in float32, as the torchvision detection references
  (``coco_utils.ConvertCocoPolysToMask``) do; adding in float64 and rounding differs by one ulp on some boxes.
  :func:`xyxy_to_xywh` is its inverse for writing COCO files (exact for boxes that were read from xywh).
- :func:`cxcywhn_to_xyxy`: YOLO's normalised ``cx cy w h`` -> pixel xyxy, computed in float64 and rounded to
  float32 once; :func:`xyxy_to_cxcywhn` writes float32 boxes so that they read back bit for bit.
- :func:`iou_from_areas`: ``inter / (area1 + area2 - inter)``, ``torchvision.ops.box_iou``'s order; it is plain
  arithmetic, so the numpy paths and the torch scan share it. :func:`box_iou` (dense, chunked; optionally with
  mmdet's union floor, ``union_eps``) and :func:`iou_pairs` (aligned pairs) are built on it.
- :func:`box_centres`: ``(x1 + x2) / 2`` in float32, the prior centres of ATSS, TAL and SimOTA.
- :func:`resize_factor`, :func:`resized_hw`: ``GeneralizedRCNNTransform``'s ``min(min_size / short side,
  max_size / long side)`` in float64, the size floored (``interpolate(..., recompute_scale_factor=True)``).
- :func:`scale_boxes` (:func:`scale_ratios`, :func:`apply_ratios`): ``transform.resize_boxes``: per-axis ratios
  resized / original computed in float32, boxes multiplied by them.
- :func:`ragged_arange`: ``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without the loop.

Example:
    >>> xywh_to_xyxy([[10, 20, 30, 40]]).tolist()
    [[10.0, 20.0, 40.0, 60.0]]
    >>> resized_hw(480, 640, 800, 1333), ragged_arange(np.array([5, 0]), np.array([2, 3])).tolist()
    ((800, 1066), [5, 6, 0, 1, 2])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Pairs of boxes per chunk in the dense IoU (bounds memory: about 40 bytes per pair).
CHUNK_PAIRS = 4_000_000


def as_boxes(boxes: Any, name: str) -> np.ndarray:
    """``boxes`` as an (N, 4) float32 array ((0, 4) when empty); ``ValueError`` naming ``name`` if the shape is
    wrong or a coordinate is NaN or infinite."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return arr


def box_centres(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 2) float32 centres ``((x1 + x2) / 2, (y1 + y2) / 2)`` of (N, 4) float32 boxes, summed and halved in
    float32 as mmdet's and Ultralytics' assigners compute prior centres."""
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    half = np.float32(2)
    return np.stack([(b[:, 0] + b[:, 2]) / half, (b[:, 1] + b[:, 3]) / half], axis=1)


def xywh_to_xyxy(boxes_xywh: Any) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes (N, 4) -> float32 xyxy, ``x2 = x + w`` added in float32 as torchvision's
    references do. Values beyond float32 become infinite (callers reject them); nothing is clipped."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(boxes_xywh, dtype=np.float32).reshape(-1, 4)
        out[:, 2:] += out[:, :2]
    return out


def xyxy_to_xywh(boxes_xyxy: Any) -> np.ndarray:
    """(N, 4) float32 xyxy -> (N, 4) float64 COCO ``[x, y, w, h]``, ``w = x2 - x1`` rounded to float32 once.

    For a box read from COCO (``x2 = x + w`` added in float32 by :func:`xywh_to_xyxy`) this gives a ``w`` that
    reads back to the same ``x2`` (``tests/test_boxes.py`` checks 200,000 random ones). For other float32 boxes a
    float32 sum ``x1 + w`` cannot reach every ``x2`` (at a tie it rounds to even), so a few per cent of random
    boxes read back one ulp off; integer corners always read back. Written with ``repr`` (as ``json.dumps`` does),
    the float64 values survive a file.

    Example:
        >>> b = xywh_to_xyxy([[0.1, 0.2, 600.5, 400.25]])
        >>> bool((xywh_to_xyxy(xyxy_to_xywh(b)) == b).all())
        True
    """
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    with np.errstate(over="ignore", invalid="ignore"):
        wh = (b[:, 2:].astype(np.float64) - b[:, :2]).astype(np.float32)
    return np.concatenate([b[:, :2], wh], axis=1).astype(np.float64)


def cxcywhn_to_xyxy(boxes_cxcywhn: Any, width: Any, height: Any) -> np.ndarray:
    """YOLO boxes, normalised ``cx cy w h`` (N, 4), -> (N, 4) float32 pixel xyxy.

    ``x1 = (cx - w / 2) * width`` and so on, in float64, rounded to float32 once; nothing is clipped. ``width``
    and ``height`` are scalars or (N,) per box. Ultralytics parses label files to float32 before this product;
    keeping float64 is what lets :func:`xyxy_to_cxcywhn` write float32 boxes that read back bit for bit.

    Example:
        >>> cxcywhn_to_xyxy([[0.5, 0.5, 0.5, 0.5]], 100, 50).tolist()
        [[25.0, 12.5, 75.0, 37.5]]
    """
    b = np.asarray(boxes_cxcywhn, dtype=np.float64).reshape(-1, 4)
    w_img, h_img = np.asarray(width, np.float64), np.asarray(height, np.float64)
    half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.stack(
            [
                (b[:, 0] - half_w) * w_img,
                (b[:, 1] - half_h) * h_img,
                (b[:, 0] + half_w) * w_img,
                (b[:, 1] + half_h) * h_img,
            ],
            axis=1,
        )
        return out.astype(np.float32)


def xyxy_to_cxcywhn(boxes_xyxy: Any, width: Any, height: Any) -> np.ndarray:
    """(N, 4) pixel xyxy -> (N, 4) float64 normalised YOLO ``cx cy w h`` (``width``, ``height``: scalars or (N,)).

    ``cx = (x1 + x2) / 2 / width`` and ``w = (x2 - x1) / width`` in float64; written with ``repr`` (17 significant
    digits), they read back through :func:`cxcywhn_to_xyxy` to the same float32 box for every box whose corners
    are not tiny against its size (the tests check every box of coco-mini and of the sample dataset).

    Example:
        >>> xyxy_to_cxcywhn([[25, 12.5, 75, 37.5]], 100, 50).tolist()
        [[0.5, 0.5, 0.5, 0.5]]
    """
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    w_img, h_img = np.asarray(width, np.float64), np.asarray(height, np.float64)
    return np.stack(
        [
            (b[:, 0] + b[:, 2]) / 2 / w_img,
            (b[:, 1] + b[:, 3]) / 2 / h_img,
            (b[:, 2] - b[:, 0]) / w_img,
            (b[:, 3] - b[:, 1]) / h_img,
        ],
        axis=1,
    )


def area(x1: Any, y1: Any, x2: Any, y2: Any) -> Any:
    """Box area ``(x2 - x1) * (y2 - y1)`` (numpy or torch, any shape)."""
    return (x2 - x1) * (y2 - y1)


def iou_from_areas(inter: Any, area1: Any, area2: Any) -> Any:
    """IoU from the intersection and the two areas, in ``torchvision.ops.box_iou``'s float32 order:
    ``inter / (area1 + area2 - inter)`` (numpy or torch; float addition is commutative, the order of the areas is
    not). Two zero-area boxes give NaN, as in torchvision."""
    return inter / (area1 + area2 - inter)


#: mmdet's ``bbox_overlaps`` floor on the union (``eps=1e-6``): ``inter / max(union, eps)``.
MMDET_IOU_EPS = 1e-6


def iou_from_areas_(inter: np.ndarray, area1: np.ndarray, area2: np.ndarray) -> np.ndarray:
    """:func:`iou_from_areas` in place for large numpy arrays: the IoU is written into ``inter``, ``area1`` is used
    as scratch. The same float32 operations in the same order."""
    area1 += area2
    area1 -= inter
    return np.divide(inter, area1, out=inter)


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area of boxes ``a`` and ``b`` (..., 4) xyxy, broadcast against each other."""
    return _intersection(a[..., 0], a[..., 1], a[..., 2], a[..., 3], b[..., 0], b[..., 1], b[..., 2], b[..., 3])


def _intersection(ax1: Any, ay1: Any, ax2: Any, ay2: Any, bx1: Any, by1: Any, bx2: Any, by2: Any) -> Any:
    w = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    h = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    return np.maximum(w, np.float32(0)) * np.maximum(h, np.float32(0))


def iou_coords(ax1: Any, ay1: Any, ax2: Any, ay2: Any, bx1: Any, by1: Any, bx2: Any, by2: Any) -> Any:
    """IoU of boxes given by their float32 coordinate arrays (broadcast against each other), torchvision's order
    with ``a`` as ``boxes1``; for callers that hold coordinates apart (the dataset scan)."""
    inter = _intersection(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2)
    return iou_from_areas(inter, area(ax1, ay1, ax2, ay2), area(bx1, by1, bx2, by2))


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` and ``b`` (..., 4) float32 xyxy broadcast against each other, torchvision's order with
    ``a`` as ``boxes1``."""
    return iou_coords(a[..., 0], a[..., 1], a[..., 2], a[..., 3], b[..., 0], b[..., 1], b[..., 2], b[..., 3])


def iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[k] with b[k], (K,) float32, with torchvision's float32 operation order.

    Args:
        a, b: (K, 4) float32 xyxy.
    """
    return iou_xyxy(a, b)


def box_iou(boxes1: Any, boxes2: Any, *, union_eps: float | None = None) -> np.ndarray:
    """Pairwise IoU, the same float32 arithmetic as ``torchvision.ops.box_iou``; chunked to bound memory.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.
        union_eps: None (torchvision) or a floor on the union, ``inter / max(union, eps)``, as mmdet's
            ``bbox_overlaps`` (:data:`MMDET_IOU_EPS`); the two agree wherever the union is at least ``eps``.

    Returns:
        (N, M) float32. Without ``union_eps``, pairs of two zero-area boxes give NaN, as in torchvision.

    Example:
        >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 10]])).round(6)
        array([[1.      , 0.142857, 0.      ]], dtype=float32)
    """
    b1 = as_boxes(boxes1, "boxes1")
    b2 = as_boxes(boxes2, "boxes2")
    n, m = len(b1), len(b2)
    out = np.empty((n, m), np.float32)
    if n == 0 or m == 0:
        return out
    area1 = area(b1[:, 0], b1[:, 1], b1[:, 2], b1[:, 3])
    area2 = area(b2[:, 0], b2[:, 1], b2[:, 2], b2[:, 3])
    step = max(1, CHUNK_PAIRS // m)
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in range(0, n, step):
            inter = intersection(b1[s : s + step, None, :], b2[None, :, :])
            if union_eps is None:
                out[s : s + step] = iou_from_areas(inter, area1[s : s + step, None], area2[None, :])
            else:
                union = area1[s : s + step, None] + area2[None, :] - inter
                out[s : s + step] = inter / np.maximum(union, np.float32(union_eps))
    return out


def resize_factor(height: float, width: float, min_size: float, max_size: float) -> float:
    """torchvision's resize factor ``min(min_size / short side, max_size / long side)`` (float64)."""
    return min(float(min_size) / min(height, width), float(max_size) / max(height, width))


def resized_hw(height: int, width: int, min_size: float, max_size: float) -> tuple[int, int]:
    """The size torchvision's ``GeneralizedRCNNTransform`` resizes an image to: each side times
    :func:`resize_factor`, floored. A side may come out 0 for a very elongated image; callers refuse that."""
    scale = resize_factor(height, width, min_size, max_size)
    return math.floor(float(height) * scale), math.floor(float(width) * scale)


def scale_ratios(original_h: Any, original_w: Any, resized_h: Any, resized_w: Any) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ``resize_boxes`` ratios ``(resized / original)`` per axis, computed in float32 (scalars or
    arrays of sizes). Returns ``(ratio_h, ratio_w)``."""
    ratio_h = np.asarray(resized_h, np.float32) / np.asarray(original_h, np.float32)
    ratio_w = np.asarray(resized_w, np.float32) / np.asarray(original_w, np.float32)
    return ratio_h, ratio_w


def apply_ratios(boxes_xyxy: Any, ratio_h: Any, ratio_w: Any) -> np.ndarray:
    """(M, 4) boxes times float32 ratios (scalars, or (M,) per box), as ``resize_boxes`` multiplies. New array."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    rh, rw = np.asarray(ratio_h, np.float32), np.asarray(ratio_w, np.float32)
    return boxes * np.stack(np.broadcast_arrays(rw, rh, rw, rh), axis=-1)


def scale_boxes(boxes_xyxy: Any, original_hw: tuple[int, int], resized_hw: tuple[int, int]) -> np.ndarray:
    """Map (M, 4) boxes from the original image to the resized input, as torchvision's ``resize_boxes``
    (:func:`scale_ratios`, then :func:`apply_ratios`), so boxes follow the floored size exactly.

    Returns:
        (M, 4) float32 xyxy, a new array.
    """
    return apply_ratios(boxes_xyxy, *scale_ratios(*original_hw, *resized_hw))


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[r], starts[r] + lengths[r])`` over runs r (lengths >= 0), int64."""
    lengths = np.asarray(lengths, np.int64)
    starts = np.asarray(starts, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    if lengths.min() == 0:
        keep = lengths > 0
        starts, lengths = starts[keep], lengths[keep]
    out = np.ones(total, np.int64)
    first = np.cumsum(lengths) - lengths
    out[0] = starts[0]
    out[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(out, out=out)
