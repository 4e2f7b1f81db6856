"""Assigners side by side on one image: the same anchors, boxes and model outputs through max-IoU, ATSS, the two
task-aligned definitions and SimOTA, and what differs.

Every assigner sees the model's own anchors (its input size and anchor generator) and the boxes scaled to that input
as torchvision scales them; the prediction-aware ones (TAL, SimOTA) also see the model's class probabilities and its
decoded boxes for that image. The tables compare positives per box, per level, the anchors two assigners agree on,
and the classification loss each assignment would give on the same outputs: focal loss with hard (one-hot)
targets for every assigner, and QFL and Varifocal with the soft targets of the assigners that define one.

Example:
    >>> sorted(ASSIGNERS)[:2], ASSIGNERS["tal_mmdet"].needs_model
    (['atss', 'max_iou'], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from explorer import overlay
from explorer.anchors.assignment import Assignment
from explorer.anchors.atss import assign_atss
from explorer.anchors.max_iou import assign_max_iou
from explorer.anchors.simota import assign_simota
from explorer.anchors.tal import assign_tal_mmdet, assign_tal_ultralytics
from explorer.detection.outputs import DenseOutputs
from explorer.labels import IGNORED, POSITIVE
from explorer.losses.classification import focal_loss
from explorer.losses.soft_targets import qfl_loss, varifocal_loss


@dataclass(frozen=True)
class AssignerInfo:
    """A display name, the library its definition comes from, and whether it needs the model's predictions."""

    name: str
    source: str
    needs_model: bool


ASSIGNERS: dict[str, AssignerInfo] = {
    "max_iou": AssignerInfo("max-IoU", "torchvision RetinaNet: Matcher(0.5, 0.4, low-quality)", False),
    "atss": AssignerInfo("ATSS", "mmdet ATSSAssigner(topk=9)", False),
    "tal_mmdet": AssignerInfo("TAL (mmdet)", "mmdet TaskAlignedAssigner(topk=13), alpha 1, beta 6", True),
    "tal_ultralytics": AssignerInfo("TAL (Ultralytics)", "Ultralytics YOLOv8: topk 10, alpha 0.5, beta 6, CIoU", True),
    "simota": AssignerInfo("SimOTA", "mmdet SimOTAAssigner: radius 2.5, top-10 IoUs, IoU weight 3", True),
}


@dataclass
class Inputs:
    """What every assigner sees, in network-input pixels.

    Attributes:
        anchors: (N, 4) float32; levels: (N,) int64; strides: (N, 2) float32 ``(stride_w, stride_h)`` per anchor.
        boxes: (M, 4) float32 GT boxes; labels: (M,) int64 model label ids.
        scores: (N, C) class probabilities, decoded: (N, 4) predicted boxes, logits: (N, C); None without a model.
    """

    anchors: np.ndarray
    levels: np.ndarray
    strides: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    logits: torch.Tensor | None = None
    decoded: np.ndarray | None = None

    @property
    def scores(self) -> np.ndarray | None:
        return None if self.logits is None else torch.sigmoid(self.logits).numpy()


def level_strides(grid_sizes: Sequence[tuple[int, int]], padded_hw: tuple[int, int], per_location: int) -> np.ndarray:
    """(N, 2) ``(stride_w, stride_h)`` per anchor, as torchvision's AnchorGenerator computes them: the padded input
    size floor-divided by each level's grid size."""
    parts = []
    for gh, gw in grid_sizes:
        stride = np.array([padded_hw[1] // gw, padded_hw[0] // gh], np.float32)
        parts.append(np.tile(stride, (gh * gw * per_location, 1)))
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)


def inputs_from_dense(dense: DenseOutputs, boxes: np.ndarray, labels: np.ndarray | None, size_divisible: int) -> Inputs:
    """The inputs of one image under a model: its anchors, levels and strides, the boxes scaled to its input, and its
    scores and decoded boxes (None when ``labels`` is None: the boxes' classes are not the model's)."""
    padded = tuple(-(-s // size_divisible) * size_divisible for s in dense.input_size)
    return Inputs(
        anchors=dense.anchors.numpy(), levels=dense.levels.numpy(),
        strides=level_strides(dense.grid_sizes, padded, dense.anchors_per_location),
        boxes=dense.to_input(boxes), labels=labels if labels is not None else np.zeros(len(boxes), np.int64),
        logits=dense.cls_logits if labels is not None else None,
        decoded=dense.decoded_boxes().numpy() if labels is not None else None,
    )  # fmt: skip


def assigner_columns(assignments: dict[str, Assignment]) -> dict[str, int]:
    """Per assigner, one image's ``<name>_positives`` (anchors) and ``<name>_no_positive`` (boxes without any)."""
    out = {}
    for name, a in assignments.items():
        out[f"{name}_positives"] = int((a.label == POSITIVE).sum())
        out[f"{name}_no_positive"] = int(a.no_positive.sum())
    return out


def run_assigners(names: Sequence[str], inputs: Inputs) -> dict[str, Assignment]:
    """One :class:`Assignment` per assigner name (keys of :data:`ASSIGNERS`), in the given order.

    Raises:
        ValueError: an unknown name, or a prediction-aware assigner without model outputs.
    """
    out = {}
    for name in names:
        if name not in ASSIGNERS:
            raise ValueError(f"unknown assigner {name!r}; expected one of {sorted(ASSIGNERS)}")
        if ASSIGNERS[name].needs_model and inputs.logits is None:
            raise ValueError(f"{ASSIGNERS[name].name} needs the model's scores and boxes")
        a, b, lv = inputs.anchors, inputs.boxes, inputs.levels
        if name == "max_iou":
            out[name] = assign_max_iou(a, b, levels=lv)
        elif name == "atss":
            out[name] = assign_atss(a, b, lv)
        elif name == "simota":
            out[name] = assign_simota(a, b, inputs.labels, inputs.scores, inputs.decoded, strides=inputs.strides,
                                      levels=lv)  # fmt: skip
        else:
            fn = assign_tal_mmdet if name == "tal_mmdet" else assign_tal_ultralytics
            out[name] = fn(a, b, inputs.labels, inputs.scores, inputs.decoded, levels=lv)
    return out


def per_gt_table(assignments: dict[str, Assignment], classes: Sequence[str]) -> pd.DataFrame:
    """One row per GT: its class, the level of its best anchor by IoU, then per assigner its positives; ``no positive
    under`` names the assigners that give it none; ``differs`` when the assigners disagree on how many it gets."""
    first = next(iter(assignments.values()))
    best = [f"P{lv + 3}" if lv >= 0 else "-" for lv in first.best_level.tolist()]
    df = pd.DataFrame({"gt": np.arange(first.num_gt), "class": list(classes), "best level": best})
    for name, a in assignments.items():
        df[ASSIGNERS[name].name] = a.num_positive
    counts = df[[ASSIGNERS[n].name for n in assignments]].to_numpy()
    df["no positive under"] = [
        ", ".join(ASSIGNERS[n].name for n, c in zip(assignments, row, strict=True) if c == 0) for row in counts
    ]
    df["differs"] = (counts != counts[:, :1]).any(axis=1) if len(counts) else []
    return df


def per_level_table(assignments: dict[str, Assignment], levels: np.ndarray, num_levels: int) -> pd.DataFrame:
    """Positives per pyramid level (P3 = level 0) under each assigner."""
    rows = {"level": [f"P{k + 3}" for k in range(num_levels)]}
    for name, a in assignments.items():
        rows[ASSIGNERS[name].name] = np.bincount(levels[a.label == POSITIVE], minlength=num_levels)[:num_levels]
    return pd.DataFrame(rows)


def overlap_table(assignments: dict[str, Assignment]) -> pd.DataFrame:
    """For each pair of assigners: anchors positive under both, only under the first, only under the second."""
    rows = []
    for (na, a), (nb, b) in combinations(assignments.items(), 2):
        pa, pb = a.label == POSITIVE, b.label == POSITIVE
        same_gt = pa & pb & (a.matched_gt == b.matched_gt)
        rows.append({
            "pair": f"{ASSIGNERS[na].name} / {ASSIGNERS[nb].name}", "both": int((pa & pb).sum()),
            "both, same box": int(same_gt.sum()), "only the first": int((pa & ~pb).sum()),
            "only the second": int((pb & ~pa).sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def loss_table(assignments: dict[str, Assignment], inputs: Inputs) -> pd.DataFrame:
    """The classification loss each assignment gives on the model's outputs, normalized by its positives: focal
    (alpha 0.25, gamma 2) with one-hot targets; QFL (beta 2) and Varifocal (alpha 0.75, gamma 2) with the soft
    targets where the assigner defines them (TAL, SimOTA), else empty. Anchors an assigner ignores (max-IoU's band
    between the thresholds) carry no loss, as in torchvision; max-IoU's focal value is torchvision's
    ``compute_loss``."""
    if inputs.logits is None:
        raise ValueError("the losses need the model's outputs")
    logits = inputs.logits.double()
    rows = []
    for name, a in assignments.items():
        pos = np.flatnonzero(a.label == POSITIVE)
        cls = torch.from_numpy(inputs.labels[a.matched_gt[pos]])
        hard = torch.zeros_like(logits)
        hard[torch.from_numpy(pos), cls] = 1.0
        norm = max(1, len(pos))
        valid = torch.from_numpy(a.label != IGNORED)  # max-IoU's band between the thresholds carries no loss
        row = {"assigner": ASSIGNERS[name].name, "positives": len(pos),
               "focal": float(focal_loss(logits, hard)[valid].sum()) / norm}  # fmt: skip
        if a.soft_target is not None:
            soft = torch.zeros_like(logits)
            soft[torch.from_numpy(pos), cls] = torch.from_numpy(a.soft_target[pos].astype(np.float64))
            row["QFL"] = float(qfl_loss(logits, soft)[valid].sum()) / norm
            row["Varifocal"] = float(varifocal_loss(logits, soft)[valid].sum()) / norm
        rows.append(row)
    return pd.DataFrame(rows, columns=["assigner", "positives", "focal", "QFL", "Varifocal"])


def positives_image(image: np.ndarray, inputs: Inputs, assignment: Assignment, *, max_boxes: int = 3000) -> np.ndarray:
    """The assignment's positive anchors over the image (input pixels), coloured by their GT with the same palette
    for every assigner, and the GT boxes."""
    colors = overlay.palette(len(inputs.boxes))
    pos = np.flatnonzero(assignment.label == POSITIVE)[:max_boxes]
    out = overlay.draw_anchor_boxes(image, inputs.anchors[pos], [colors[int(g)] for g in assignment.matched_gt[pos]])
    return overlay.draw_boxes(out, inputs.boxes, colors=colors, thickness=3)


def soft_target_maps(
    assignment: Assignment, grid_sizes: Sequence[tuple[int, int]], per_location: int
) -> list[np.ndarray]:
    """Per level, the largest soft target over the anchors of each location: (gh, gw) float32 maps (0 elsewhere)."""
    values = np.zeros(len(assignment.label), np.float32)
    if assignment.soft_target is not None:
        pos = assignment.label == POSITIVE
        values[pos] = assignment.soft_target[pos]
    maps, start = [], 0
    for gh, gw in grid_sizes:
        n = gh * gw * per_location
        maps.append(values[start : start + n].reshape(gh, gw, per_location).max(axis=2))
        start += n
    return maps
