"""The references of the scan: the dense-equivalent labeling of one image, and torchvision's own parts.

:func:`reference_image_stats` labels every anchor of one image with :func:`explorer.anchors.max_iou.assign_max_iou`;
the scan uses it for the images its fast path cannot prove exact, and the tests compare the fast path with it.

:class:`TorchvisionReference` is the reference the scan is measured against: torchvision's own parts, image by
image.

For each image: pycocotools' annotations (non-crowd), converted to float32 xyxy and clamped as torchvision's
detection references do (``coco_utils.ConvertCocoPolysToMask``); ``GeneralizedRCNNTransform`` on a blank image of
the original size (resize + ``resize_boxes`` + padding to 32); ``AnchorGenerator`` on feature maps of the sizes a
ResNet-FPN with P6/P7 gives (ceil(n / 2) per stride-2 op); ``box_iou``; ``Matcher(pos, neg,
allow_low_quality_matches=True)``. This is slow (about 20-25 COCO images per second on 2 cores) and used by the
tests and the benchmark, never by the app.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from explorer.anchors.grid import level_grids
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_cpu import PER_LEVEL, TOTALS

# ----------------------------------------------------------------------------------------------------------------
# The dense-equivalent path for single images (exact by construction, slow): what the scan falls back on
# ----------------------------------------------------------------------------------------------------------------


def reference_image_stats(
    boxes_input: np.ndarray, input_hw: tuple[int, int], cfg: ScanConfig
) -> dict[str, np.ndarray | int]:
    """Counts for one image from :func:`explorer.anchors.max_iou.assign_max_iou` on all its anchors.

    Args:
        boxes_input: (K, 4) float32 xyxy non-crowd boxes at the input scale, file order.
        input_hw: resized (unpadded) input size.
        cfg: the scan configuration.

    Returns:
        dict with ``positives``, ``ignored``, ``hard``, ``easy`` (ints), ``level_pos``, ``level_ign``,
        ``level_hard``, ``level_easy`` (L,) and per box ``box_pos``, ``box_best``, ``box_lq_only`` (K,).
    """
    from explorer.anchors.grid import generate_anchors
    from explorer.anchors.max_iou import assign_max_iou
    from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, POSITIVE

    anchors, levels = generate_anchors(input_hw[0], input_hw[1], cfg.anchors)
    grids = level_grids(input_hw[0], input_hw[1], cfg.anchors)
    a = assign_max_iou(
        anchors,
        np.asarray(boxes_input, np.float32).reshape(-1, 4),
        pos_thresh=cfg.pos_thresh,
        neg_thresh=cfg.neg_thresh,
        low_quality=cfg.low_quality,
        levels=levels,
        grids=grids,
    )
    nl = cfg.anchors.num_levels

    def per_level(code: int) -> np.ndarray:
        return np.bincount(levels[a.label == code], minlength=nl)[:nl].astype(np.int64)

    res: dict[str, np.ndarray | int] = {
        "level_pos": per_level(POSITIVE),
        "level_ign": per_level(IGNORED),
        "level_hard": per_level(HARD_NEGATIVE),
        "level_easy": per_level(EASY_NEGATIVE),
        "box_pos": a.num_positive.astype(np.int64),
        "box_best": a.best_iou.astype(np.float32),
        "box_lq_only": a.low_quality_only.astype(bool),
    }
    for key, lv_key in zip(TOTALS, PER_LEVEL, strict=True):
        res[key] = int(np.sum(res[lv_key]))
    return res


def _feature_sizes(padded_h: int, padded_w: int, strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """ResNet-FPN feature-map sizes: P3..P5 = padded / stride, each further level ceil(previous / 2)."""
    sizes = []
    for s in strides:
        if s <= 32:
            sizes.append((padded_h // s, padded_w // s))
        else:
            h, w = sizes[-1]
            sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


class TorchvisionReference:
    """Per-image counts with torchvision's transform, anchor generator, ``box_iou`` and ``Matcher``.

    Args:
        coco: a ``pycocotools.coco.COCO`` object.
        sizes, aspect_ratios, strides: the anchor configuration (torchvision convention).
        min_size, max_size: the transform's resize rule.
        pos_thresh, neg_thresh, low_quality: the matcher.
    """

    def __init__(
        self,
        coco: Any,
        *,
        sizes: tuple[tuple[int, ...], ...] = (
            (32, 40, 50),
            (64, 80, 101),
            (128, 161, 203),
            (256, 322, 406),
            (512, 645, 812),
        ),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        min_size: int = 800,
        max_size: int = 1333,
        pos_thresh: float = 0.5,
        neg_thresh: float = 0.4,
        low_quality: bool = True,
    ) -> None:
        from torchvision.models.detection._utils import Matcher
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        self.coco = coco
        self.strides = strides
        self.transform = GeneralizedRCNNTransform(min_size, max_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        self.transform.train()
        self.anchor_generator = AnchorGenerator(sizes, (aspect_ratios,) * len(sizes))
        self.matcher = Matcher(pos_thresh, neg_thresh, allow_low_quality_matches=low_quality)

    def gt_boxes(self, image_id: Any) -> tuple[Any, tuple[int, int]]:
        """Non-crowd boxes of an image, float32 xyxy clamped (torchvision references), and (height, width)."""
        import torch

        img = self.coco.imgs[image_id]
        h, w = int(img["height"]), int(img["width"])
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)) if a.get("iscrowd", 0) == 0]
        boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=w)
        boxes[:, 1::2].clamp_(min=0, max=h)
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        return boxes[keep], (h, w)

    def image_stats(self, image_id: Any) -> dict[str, Any]:
        """Counts for one image: positives, ignored, hard, easy, per-level positives, per-GT positives."""
        import torch
        from torchvision.ops import box_iou

        boxes, (h, w) = self.gt_boxes(image_id)
        with torch.no_grad():
            images, targets = self.transform(
                [torch.zeros(3, h, w)], [{"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}]
            )
            ph, pw = images.tensors.shape[-2:]
            feats = [torch.empty(1, 1, gh, gw) for gh, gw in _feature_sizes(int(ph), int(pw), self.strides)]
            anchors = self.anchor_generator(images, feats)[0]
            counts = [
                gh * gw * a
                for (gh, gw), a in zip(
                    [f.shape[-2:] for f in feats], self.anchor_generator.num_anchors_per_location(), strict=True
                )
            ]
            level = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
            gt = targets[0]["boxes"]
            n = len(anchors)
            if len(gt) == 0:
                return {
                    "input_hw": tuple(images.image_sizes[0]),
                    "anchors": n,
                    "positives": 0,
                    "ignored": 0,
                    "hard": 0,
                    "easy": n,
                    "level_pos": np.zeros(len(counts), np.int64),
                    "box_pos": np.zeros(0, np.int64),
                    "box_best": np.zeros(0, np.float32),
                    "box_lq_only": np.zeros(0, bool),
                    "gt": gt.numpy(),
                }
            iou = box_iou(gt, anchors)
            matches = self.matcher(iou)
            max_iou = iou.max(dim=0).values
            pos = matches >= 0
            ign = matches == -2
            neg = matches == -1
            hard = neg & (max_iou > 0)
            easy = neg & (max_iou == 0)
            box_pos = torch.bincount(matches[pos], minlength=len(gt))
            regular = torch.bincount(matches[pos & (max_iou >= self.matcher.high_threshold)], minlength=len(gt))
            return {
                "input_hw": tuple(images.image_sizes[0]),
                "anchors": n,
                "positives": int(pos.sum()),
                "ignored": int(ign.sum()),
                "hard": int(hard.sum()),
                "easy": int(easy.sum()),
                "level_pos": torch.bincount(level[pos], minlength=len(counts)).numpy(),
                "box_pos": box_pos.numpy(),
                "box_best": iou.max(dim=1).values.numpy(),
                "box_lq_only": ((box_pos > 0) & (regular == 0)).numpy(),
                "gt": gt.numpy(),
            }

    def run(self, image_ids: Iterable[Any]) -> list[dict[str, Any]]:
        """:meth:`image_stats` for each image id."""
        return [self.image_stats(i) for i in image_ids]
