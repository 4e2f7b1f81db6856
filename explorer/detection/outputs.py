"""What the head predicts for one image and how it becomes detections, as torchvision's RetinaNet does it.

:class:`DenseOutputs` holds the per-anchor class logits and box deltas with their anchors and levels (from which
per-anchor losses are computed without running the model again: ``explorer.detection.lossmaps``), and maps boxes
between the original image and the network input exactly as torchvision's ``resize_boxes``.
:func:`postprocess_dense` is torchvision's ``postprocess_detections`` + ``transform.postprocess`` on them: per level
sigmoid, score threshold, top-k over (anchor, class), decode (:func:`decode_deltas`), clip, class-wise NMS.
:class:`Detections` are boxes in original-image pixels; :func:`filter_detections` selects what a page shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import boxes as box_ops

from explorer.boxes import scale_boxes

#: Postprocessing defaults (torchvision's RetinaNet).
SCORE_THRESH = 0.05
TOPK_CANDIDATES = 1000
NMS_THRESH = 0.5
DETECTIONS_PER_IMG = 300
#: torchvision RetinaNet's box coder: weights (1, 1, 1, 1), dw/dh clamped at log(1000/16).
_BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


@dataclass
class Detections:
    """Boxes in original-image pixels.

    Attributes:
        boxes: (D, 4) float32 xyxy.
        scores: (D,) float32 in (0, 1).
        labels: (D,) int64 label ids.
        levels: (D,) int64 pyramid level index (0 = P3) of the anchor each box came from.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    levels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )


@dataclass
class DenseOutputs:
    """Everything the head predicts for one image, before postprocessing (torchvision order).

    Attributes:
        cls_logits: (N, K) float32 class logits per anchor.
        bbox_deltas: (N, 4) float32 box deltas (dx, dy, dw, dh), BoxCoder weights (1, 1, 1, 1).
        anchors: (N, 4) float32 xyxy anchors in network-input pixels (the resized image).
        levels: (N,) int64 level index 0..L-1 (0 = P3).
        grid_sizes: per level (gh, gw).
        anchors_per_location: A.
        input_size: (h, w) of the resized image before padding (what boxes are clipped to).
        image_size: (h, w) of the original image.
    """

    cls_logits: torch.Tensor
    bbox_deltas: torch.Tensor
    anchors: torch.Tensor
    levels: torch.Tensor
    grid_sizes: list[tuple[int, int]]
    anchors_per_location: int
    input_size: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def level_counts(self) -> list[int]:
        return [gh * gw * self.anchors_per_location for gh, gw in self.grid_sizes]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Original pixels per input pixel, (sx, sy)."""
        return self.image_size[1] / self.input_size[1], self.image_size[0] / self.input_size[0]

    def to_original(self, boxes: torch.Tensor) -> torch.Tensor:
        """Input-pixel xyxy boxes -> original-image pixels (torchvision's ``resize_boxes``)."""
        sx, sy = self.scale_xy
        return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image xyxy boxes -> network-input pixels, (M, 4) float32.

        Exactly torchvision's ``resize_boxes`` (:func:`explorer.boxes.scale_boxes`: float32 ratio input /
        original, multiplied), so the labels of anchors at an IoU threshold tie are torchvision's.
        """
        return scale_boxes(boxes, self.image_size, self.input_size)

    def decoded_boxes(self) -> torch.Tensor:
        """Every anchor's predicted box, (N, 4) float32 xyxy in input pixels, clipped to the input size."""
        boxes = decode_deltas(self.bbox_deltas, self.anchors)
        return box_ops.clip_boxes_to_image(boxes, self.input_size)

    def max_prob_maps(self) -> list[np.ndarray]:
        """Per level, the highest class probability over anchors and classes: (gh, gw) float32 maps."""
        probs = torch.sigmoid(self.cls_logits).amax(dim=1)
        maps = []
        for (gh, gw), chunk in zip(self.grid_sizes, probs.split(self.level_counts), strict=True):
            maps.append(chunk.reshape(gh, gw, self.anchors_per_location).amax(dim=2).numpy().astype(np.float32))
        return maps

    def split_per_level(self) -> tuple[dict[str, list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Head outputs and anchors split per level, batched as torchvision's ``postprocess_detections`` wants."""
        counts = self.level_counts
        head = {
            "cls_logits": [t[None] for t in self.cls_logits.split(counts)],
            "bbox_regression": [t[None] for t in self.bbox_deltas.split(counts)],
        }
        return head, [list(self.anchors.split(counts))]


def decode_deltas(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """R-CNN delta decoding with weights (1, 1, 1, 1) and dw/dh clamped at log(1000/16) (reference.md 2.1).

    Args:
        deltas: (N, 4) (dx, dy, dw, dh).
        anchors: (N, 4) xyxy.

    Returns:
        (N, 4) xyxy, the same arithmetic as torchvision's ``BoxCoder.decode_single``.
    """
    return _BOX_CODER.decode_single(deltas, anchors)


def level_candidates(
    cls_logits: torch.Tensor,
    bbox_deltas: torch.Tensor,
    anchors: torch.Tensor,
    level_counts: list[int],
    input_size: tuple[int, int],
    *,
    score_thresh: float = SCORE_THRESH,
    topk: int = TOPK_CANDIDATES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's per-level candidate selection: sigmoid, score > thresh, top-k over (anchor, class), decode, clip.

    Args:
        cls_logits: (N, K) float32 class logits; bbox_deltas: (N, 4) float32; anchors: (N, 4) float32 xyxy.
        level_counts: anchors per level, in order (they sum to N).
        input_size: (h, w) the boxes are clipped to.

    Returns:
        ``(boxes (C, 4) input pixels, scores (C,), labels (C,), levels (C,))``.
    """
    boxes, scores, labels, levels = [], [], [], []
    num_classes = cls_logits.shape[1]
    start = 0
    for level, count in enumerate(level_counts):
        scores_l = torch.sigmoid(cls_logits[start : start + count]).flatten()
        keep = scores_l > score_thresh
        scores_l = scores_l[keep]
        idx = torch.where(keep)[0]
        k = min(topk, idx.numel())
        scores_l, order = scores_l.topk(k)
        idx = idx[order]
        anchor_idx = torch.div(idx, num_classes, rounding_mode="floor")
        decoded = decode_deltas(
            bbox_deltas[start : start + count][anchor_idx], anchors[start : start + count][anchor_idx]
        )
        boxes.append(box_ops.clip_boxes_to_image(decoded, input_size))
        scores.append(scores_l)
        labels.append(idx % num_classes)
        levels.append(torch.full((k,), level, dtype=torch.int64, device=idx.device))
        start += count
    return torch.cat(boxes), torch.cat(scores), torch.cat(labels), torch.cat(levels)


def candidates_from_dense(
    dense: DenseOutputs, *, score_thresh: float = SCORE_THRESH, topk: int = TOPK_CANDIDATES
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`level_candidates` of the dense outputs: ``(boxes (C, 4) input pixels, scores, labels, levels)``."""
    return level_candidates(
        dense.cls_logits,
        dense.bbox_deltas,
        dense.anchors,
        dense.level_counts,
        dense.input_size,
        score_thresh=score_thresh,
        topk=topk,
    )


def _as_detections(
    dense: DenseOutputs, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, levels: torch.Tensor
) -> Detections:
    return Detections(
        dense.to_original(boxes).numpy().astype(np.float32),
        scores.numpy().astype(np.float32),
        labels.numpy().astype(np.int64),
        levels.numpy().astype(np.int64),
    )


def postprocess_dense(
    dense: DenseOutputs,
    *,
    score_thresh: float = SCORE_THRESH,
    topk: int = TOPK_CANDIDATES,
    nms_thresh: float = NMS_THRESH,
    detections_per_img: int = DETECTIONS_PER_IMG,
) -> tuple[Detections, Detections]:
    """``(final detections, candidates before NMS)`` from dense outputs, in original-image pixels.

    Identical to torchvision's ``RetinaNet.postprocess_detections`` + ``transform.postprocess``.
    """
    boxes, scores, labels, levels = candidates_from_dense(dense, score_thresh=score_thresh, topk=topk)
    keep = box_ops.batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
    final = _as_detections(dense, boxes[keep], scores[keep], labels[keep], levels[keep])
    return final, _as_detections(dense, boxes, scores, labels, levels)


def filter_detections(
    dets: Detections, *, score_thresh: float = 0.0, classes: set[int] | None = None, max_detections: int | None = None
) -> Detections:
    """Keep detections with score >= ``score_thresh`` and a label in ``classes``, best ``max_detections`` first."""
    keep = dets.scores >= score_thresh
    if classes is not None:
        keep &= np.isin(dets.labels, np.fromiter(classes, np.int64, len(classes)))
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(-dets.scores[idx], kind="stable")]
    if max_detections is not None:
        idx = idx[: max(0, max_detections)]
    return Detections(dets.boxes[idx], dets.scores[idx], dets.labels[idx], dets.levels[idx])
