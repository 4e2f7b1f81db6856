"""torchvision's own per-image losses (``RetinaNet.compute_loss`` and its heads), the reference of the model scan."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou, sigmoid_focal_loss

from explorer.detection.inference import image_to_tensor


@torch.no_grad()
def torchvision_losses(model, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``classification`` (focal) and ``bbox_regression`` from torchvision's compute_loss for one image, and
    ``ce``: the same classification sum with plain BCE (focal with alpha -1, gamma 0) over torchvision's matches."""
    target = {"boxes": torch.from_numpy(boxes).float().reshape(-1, 4), "labels": torch.from_numpy(labels).long()}
    images, targets = model.transform([image_to_tensor(image)], [target])
    features = list(model.backbone(images.tensors).values())
    head = model.head(features)
    anchors = model.anchor_generator(images, features)
    losses = model.compute_loss(targets, head, anchors)
    t = targets[0]
    if t["boxes"].numel() == 0:
        matched = torch.full((anchors[0].shape[0],), -1, dtype=torch.int64)
    else:
        matched = model.proposal_matcher(box_iou(t["boxes"], anchors[0]))
    logits = head["cls_logits"][0]
    fg = matched >= 0
    onehot = torch.zeros_like(logits)
    onehot[fg, t["labels"][matched[fg]]] = 1.0
    valid = matched != model.proposal_matcher.BETWEEN_THRESHOLDS
    ce = sigmoid_focal_loss(logits[valid], onehot[valid], alpha=-1, gamma=0, reduction="sum") / max(1, int(fg.sum()))
    return {
        "focal": float(losses["classification"]),
        "box": float(losses["bbox_regression"]),
        "ce": float(ce),
        "positives": int(fg.sum()),
        "ignored": int((~valid).sum()),
    }
