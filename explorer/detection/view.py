"""What the Live detections page shows, as arrays and tables: sample scenes with ground truth, detection overlays
(coloured by TP / FP / missed when GT is known, crowd regions hatched) and the detection table.

Example:
    >>> scene = sample_scene(0)
    >>> scene.image.shape, scene.gt_boxes.shape[1], scene.name
    ((480, 640, 3), 4, 'held-out scene 1')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.dataset.coco import CocoDataset
from explorer.detection.demo_model import DEMO_SCENE_CONFIG, HELDOUT_SEED, scene_seeds
from explorer.detection.evaluation import Matching
from explorer.detection.outputs import Detections
from explorer.overlay import CROWD_COLOR, LEVEL_COLORS, draw_boxes, draw_ignore_regions, palette
from explorer.synthetic import make_scene, scene_targets

TP_COLOR = (0, 200, 83)
FP_COLOR = (230, 0, 0)
MISSED_COLOR = (255, 215, 0)
#: How many sample scenes the page offers (the first held-out scenes of the demo model's evaluation set).
NUM_SAMPLE_SCENES = 20


@dataclass
class Scene:
    """An image with its ground truth. gt_boxes (M, 4) float32 xyxy; gt_labels (M,) int64 category ids."""

    name: str
    image: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray


def sample_scene(index: int) -> Scene:
    """Held-out scene ``index`` (0-based) of the demo model's evaluation set (never seen in training)."""
    if not 0 <= index < NUM_SAMPLE_SCENES:
        raise ValueError(f"sample scene index must be in 0..{NUM_SAMPLE_SCENES - 1}, got {index}")
    seed = scene_seeds(index + 1, HELDOUT_SEED)[index]
    image, anns = make_scene(seed, DEMO_SCENE_CONFIG)
    boxes, labels = scene_targets(anns)
    return Scene(f"held-out scene {index + 1}", image, boxes, labels)


def category_mismatch(ds: CocoDataset, labels: np.ndarray, class_names: dict[int, str]) -> str | None:
    """Why a COCO JSON's categories cannot be compared with a model's classes, or None when they can.

    Ground truth and detections are matched by class id, so each id of the image's boxes must be one of the model's
    classes with the same name (case and spaces ignored; a model whose classes are only named ``"class k"`` is
    trusted on the ids). Matching COCO's "person" (id 1) with the demo model's "circle" (id 1) would be wrong.

    Args:
        ds: the uploaded annotations.
        labels: (K,) int64 category ids of the image's boxes (:meth:`CocoDataset.image_annotations`).
        class_names: the model's class id -> name.

    Returns:
        A message naming up to three offending ids, or None.
    """

    def norm(name: str) -> str:
        return " ".join(name.lower().split())

    bad = []
    for cid in sorted(set(np.asarray(labels).astype(np.int64).tolist())):
        gt_name = ds.category_name(cid)
        model_name = class_names.get(cid)
        if model_name is None:
            bad.append(f"id {cid} {gt_name!r} is not a model class")
        elif model_name != f"class {cid}" and norm(model_name) != norm(gt_name):
            bad.append(f"id {cid} is {gt_name!r} in the JSON but {model_name!r} for the model")
    if not bad:
        return None
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return "The ground truth's categories are not the model's classes: " + "; ".join(bad[:3]) + more + "."


def _label_text(dets: Detections, class_names: dict[int, str]) -> list[str]:
    return [
        f"{class_names.get(label, f'class {label}')} {score:.2f}"
        for label, score in zip(dets.labels.tolist(), dets.scores.tolist(), strict=True)
    ]


def draw_detections(
    image: np.ndarray,
    dets: Detections,
    class_names: dict[int, str],
    *,
    matching: Matching | None = None,
    gt_boxes: np.ndarray | None = None,
    crowd_boxes: np.ndarray | None = None,
    color_by: str = "class",
    show_labels: bool = True,
    thickness: int = 2,
) -> np.ndarray:
    """Boxes with class names and scores on a copy of the image.

    Args:
        image: (H, W, 3) uint8 RGB.
        dets: detections in image pixels.
        class_names: label id -> name.
        matching: with ground truth, colours TP green and FP red, and draws missed GT (yellow, dashed-free).
        gt_boxes: (M, 4) the GT boxes that ``matching`` refers to.
        crowd_boxes: (C, 4) crowd regions, hatched; detections on them (``matching.on_crowd``) are drawn grey.
        color_by: ``"class"`` or ``"level"`` (when no matching is given).
        show_labels: draw the name/score tabs (off for hundreds of candidates).
        thickness: line width.

    Returns:
        A new (H, W, 3) uint8 image.
    """
    if color_by not in ("class", "level"):
        raise ValueError(f"color_by must be 'class' or 'level', got {color_by!r}")
    if matching is not None:
        colors = [
            TP_COLOR if tp else FP_COLOR if fp else CROWD_COLOR
            for tp, fp in zip(matching.is_tp.tolist(), matching.is_fp.tolist(), strict=True)
        ]
    elif color_by == "level":
        colors = [LEVEL_COLORS[int(lv) % len(LEVEL_COLORS)] for lv in dets.levels.tolist()]
    else:
        pal = palette(max(class_names, default=0) + 1 if class_names else 1)
        colors = [pal[int(lab) % len(pal)] for lab in dets.labels.tolist()]
    out = image
    if crowd_boxes is not None and len(crowd_boxes):
        out = draw_ignore_regions(out, crowd_boxes, label="crowd" if show_labels else "")
    if matching is not None and gt_boxes is not None and matching.missed.any():
        missed = np.asarray(gt_boxes, np.float32).reshape(-1, 4)[matching.missed]
        out = draw_boxes(
            out,
            missed,
            labels=["missed"] * len(missed) if show_labels else None,
            colors=MISSED_COLOR,
            thickness=thickness + 1,
        )
    order = np.argsort(dets.scores, kind="stable")  # best drawn last, on top
    ordered = Detections(dets.boxes[order], dets.scores[order], dets.labels[order], dets.levels[order])
    labels = _label_text(ordered, class_names) if show_labels else None
    return draw_boxes(out, ordered.boxes, labels=labels, colors=[colors[i] for i in order], thickness=thickness)


def detections_table(dets: Detections, class_names: dict[int, str], matching: Matching | None = None) -> pd.DataFrame:
    """One row per detection: class, score, level, box (and TP / FP / on crowd with IoU when matched)."""
    b = dets.boxes
    df = pd.DataFrame(
        {
            "class": [class_names.get(int(k), f"class {k}") for k in dets.labels.tolist()],
            "label": dets.labels,
            "score": np.round(dets.scores, 4),
            "level": [f"P{3 + int(lv)}" for lv in dets.levels.tolist()],
            "x1": np.round(b[:, 0], 1),
            "y1": np.round(b[:, 1], 1),
            "x2": np.round(b[:, 2], 1),
            "y2": np.round(b[:, 3], 1),
        }
    )
    if matching is not None:
        df["result"] = np.where(matching.is_tp, "TP", np.where(matching.is_fp, "FP", "on crowd"))
        df["IoU"] = np.round(matching.iou, 3)
    return df
