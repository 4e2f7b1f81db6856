"""The Anchor lab's analysis, free of Streamlit: anchors for an image, labeling, tables and overlay images.

A page calls :func:`prepare_scene` (anchors of the network input), :func:`label_anchors` (max-IoU or ATSS on the
resized GT boxes) and then the table and image builders below.

Example:
    >>> scene = prepare_scene(480, 640, AnchorConfig())
    >>> scene.resized_hw, scene.padded_hw, len(scene.anchors)
    ((800, 1066), (800, 1088), 163206)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer import overlay
from explorer.anchors.assignment import Assignment
from explorer.anchors.atss import assign_atss
from explorer.anchors.grid import (
    AnchorConfig,
    LevelGrid,
    anchors_at_point,
    generate_anchors,
    level_grids,
    level_offsets,
    padded_size,
    resized_size,
)
from explorer.anchors.iou import SparseIoU, sparse_iou_grid
from explorer.anchors.max_iou import assign_from_sparse
from explorer.anchors.stats import best_possible_recall, per_level_counts
from explorer.boxes import scale_boxes
from explorer.labels import HARD_NEGATIVE, IGNORED, LABEL_NAMES, LABEL_RGB, POSITIVE, negatives_per_positive


@dataclass(frozen=True)
class AnchorScene:
    """The anchors of one network input.

    Attributes:
        original_hw: the image size (H, W).
        resized_hw: the network input size before padding.
        padded_hw: after padding to ``size_divisible``.
        config: the anchor configuration.
        grids: per-level grids.
        anchors: (N, 4) float32 xyxy in resized-input pixels.
        levels: (N,) int64 level index.
    """

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    config: AnchorConfig
    grids: list[LevelGrid]
    anchors: np.ndarray
    levels: np.ndarray

    @property
    def level_names(self) -> list[str]:
        return [f"P{g.level}" for g in self.grids]

    @property
    def scale(self) -> float:
        """Resize factor of the height (resized / original)."""
        return self.resized_hw[0] / self.original_hw[0]

    def to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map original-image boxes to resized-input pixels, (M, 4) float32."""
        return scale_boxes(boxes_xyxy, self.original_hw, self.resized_hw)


def prepare_scene(height: int, width: int, config: AnchorConfig) -> AnchorScene:
    """Resize rule, padding, grids and anchors for an image of ``height x width``."""
    rh, rw = resized_size(height, width, config)
    anchors, levels = generate_anchors(rh, rw, config)
    return AnchorScene(
        original_hw=(int(height), int(width)),
        resized_hw=(rh, rw),
        padded_hw=padded_size(rh, rw, config),
        config=config,
        grids=level_grids(rh, rw, config),
        anchors=anchors,
        levels=levels,
    )


def compute_sparse(scene: AnchorScene, boxes_input: np.ndarray) -> SparseIoU:
    """Intersecting (anchor, GT) pairs for GT boxes already in input pixels."""
    return sparse_iou_grid(scene.anchors, boxes_input, scene.grids)


def label_anchors(
    scene: AnchorScene,
    boxes_input: np.ndarray,
    sparse: SparseIoU,
    *,
    assigner: str = "max_iou",
    pos_thresh: float = 0.5,
    neg_thresh: float = 0.4,
    low_quality: bool = True,
    semantics: str = "torchvision",
    topk: int = 9,
) -> Assignment:
    """Label every anchor with ``assigner`` = ``"max_iou"`` or ``"atss"``."""
    if assigner == "max_iou":
        return assign_from_sparse(
            sparse,
            pos_thresh=pos_thresh,
            neg_thresh=neg_thresh,
            low_quality=low_quality,
            semantics=semantics,
            levels=scene.levels,
        )
    if assigner == "atss":
        return assign_atss(scene.anchors, boxes_input, scene.levels, topk=topk, grids=scene.grids, sparse=sparse)
    raise ValueError(f"assigner must be 'max_iou' or 'atss', got {assigner!r}")


def box_sizes(boxes_xyxy: np.ndarray) -> np.ndarray:
    """sqrt(w * h) of each box, (M,) float64."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))


def default_location(scene: AnchorScene, boxes_input: np.ndarray) -> tuple[float, float]:
    """Where the location view starts: the centre of the first GT, else the centre of the input."""
    b = np.asarray(boxes_input, dtype=np.float64).reshape(-1, 4)
    if len(b):
        return float((b[0, 0] + b[0, 2]) / 2), float((b[0, 1] + b[0, 3]) / 2)
    return scene.padded_hw[1] / 2, scene.padded_hw[0] / 2


def summary(assignment: Assignment, pos_thresh: float) -> dict[str, float]:
    """Headline numbers: anchor counts per label, best possible recall, anchors per GT, unmatched GTs."""
    counts = assignment.label_counts()
    m = assignment.num_gt
    return {
        "anchors": assignment.num_anchors,
        "positive": counts["positive"],
        "ignored": counts["ignored"],
        "hard negative": counts["hard negative"],
        "easy negative": counts["easy negative"],
        "gt": m,
        "best possible recall": best_possible_recall(assignment.best_iou, pos_thresh),
        "mean positives per GT": float(assignment.num_positive.mean()) if m else float("nan"),
        "unmatched GTs": int(assignment.no_positive.sum()),
        "low-quality-only GTs": int(assignment.low_quality_only.sum()),
        "negatives per positive": negatives_per_positive(
            counts["easy negative"] + counts["hard negative"], counts["positive"]
        ),
    }


def per_level_table(scene: AnchorScene, assignment: Assignment) -> pd.DataFrame:
    """One row per level: grid, stride, anchors per location, and anchors per label."""
    counts = per_level_counts(assignment, len(scene.grids))
    rows = []
    for li, g in enumerate(scene.grids):
        sizes = np.sqrt((g.cell_anchors[:, 2] - g.cell_anchors[:, 0]) * (g.cell_anchors[:, 3] - g.cell_anchors[:, 1]))
        rows.append(
            {
                "level": f"P{g.level}",
                "grid (h×w)": f"{g.grid_hw[0]}x{g.grid_hw[1]}",
                "stride (h×w)": f"{g.stride_hw[0]}x{g.stride_hw[1]}",
                "anchors/location": len(g.cell_anchors),
                "sizes (px)": ", ".join(f"{s:.0f}" for s in np.unique(np.round(sizes, 1))),
                "anchors": int(counts["anchors"][li]),
                "positive": int(counts["positive"][li]),
                "ignored": int(counts["ignored"][li]),
                "hard negative": int(counts["hard negative"][li]),
                "easy negative": int(counts["easy negative"][li]),
                "GTs best here": int((assignment.best_level == li).sum()),
            }
        )
    df = pd.DataFrame(rows)
    total = {c: int(df[c].sum()) for c in ("anchors", "positive", "ignored", "hard negative", "easy negative")}
    total.update(
        {
            "level": "all",
            "grid (h×w)": "",
            "stride (h×w)": "",
            "sizes (px)": "",
            "GTs best here": int(df["GTs best here"].sum()),
        }
    )
    total["anchors/location"] = int(df["anchors/location"].max()) if len(df) else 0
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def per_gt_table(
    scene: AnchorScene, boxes_input: np.ndarray, classes: Sequence[str], assignment: Assignment
) -> pd.DataFrame:
    """One row per GT: box (input px), size, positives, ignored, best IoU, level of the best anchor, status
    ("ok", "low-quality only", "no positive"); ATSS adds the per-GT IoU threshold."""
    b = np.asarray(boxes_input, dtype=np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    names = scene.level_names
    status = np.where(
        assignment.no_positive, "no positive", np.where(assignment.low_quality_only, "low-quality only", "ok")
    )
    df = pd.DataFrame(
        {
            "gt": np.arange(len(b)),
            "class": list(classes),
            "x1": b[:, 0].round(1),
            "y1": b[:, 1].round(1),
            "x2": b[:, 2].round(1),
            "y2": b[:, 3].round(1),
            "size √(wh)": np.sqrt(w * h).round(1),
            "aspect h/w": (h / np.maximum(w, 1e-9)).round(2),
            "positives": assignment.num_positive,
            "ignored": assignment.num_ignored,
            "best IoU": assignment.best_iou.round(4),
            "best level": [names[li] if li >= 0 else "-" for li in assignment.best_level],
            "status": status,
        }
    )
    if assignment.method == "atss":
        df.insert(len(df.columns) - 1, "ATSS threshold", assignment.threshold.round(4))
    return df


def location_table(
    scene: AnchorScene, x: float, y: float, boxes_input: np.ndarray, assignment: Assignment
) -> pd.DataFrame:
    """Every anchor (all levels, all shapes) at the grid cell nearest to (x, y), with its IoU and label."""
    idx = anchors_at_point(x, y, scene.grids)
    a = scene.anchors[idx].astype(np.float64)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    names = scene.level_names
    lv = scene.levels[idx]
    offsets = level_offsets(scene.grids)
    shape = [int((i - offsets[li]) % len(scene.grids[li].cell_anchors)) for i, li in zip(idx, lv, strict=True)]
    return pd.DataFrame(
        {
            "anchor": idx,
            "level": [names[li] for li in lv],
            "shape": shape,
            "centre": [f"({(r[0] + r[2]) / 2:.0f}, {(r[1] + r[3]) / 2:.0f})" for r in a],
            "w": w.round(1),
            "h": h.round(1),
            "size √(wh)": np.sqrt(w * h).round(1),
            "ratio h/w": (h / w).round(2),
            "max IoU": assignment.max_iou[idx].round(4),
            "best GT": assignment.argmax_gt[idx],
            "label": [LABEL_NAMES[int(c)] for c in assignment.label[idx]],
            "matched GT": assignment.matched_gt[idx],
        }
    )


def sweep_table(sweep: dict[str, np.ndarray]) -> pd.DataFrame:
    """The threshold sweep as a table (one row per positive threshold)."""
    return pd.DataFrame(
        {
            "pos threshold": sweep["pos_thresh"],
            "neg threshold": sweep["neg_thresh"],
            "mean positives/GT": np.round(sweep["mean_pos_per_gt"], 2),
            "median positives/GT": sweep["median_pos_per_gt"],
            "GTs with no positive": sweep["unmatched_gt"],
            "GTs low-quality only": sweep["low_quality_only_gt"],
            "positive anchors": sweep["num_positive"],
            "ignored anchors": sweep["num_ignored"],
            "best possible recall": np.round(sweep["best_possible_recall"], 4),
        }
    )


# ---------------------------------------------------------------- images


def _anchors_with(
    scene: AnchorScene, assignment: Assignment, code: int, levels: Sequence[int] | None, max_boxes: int
) -> np.ndarray:
    """Indices of the anchors labelled ``code`` on ``levels`` (default all), evenly thinned to ``max_boxes``."""
    hit = assignment.label == code
    if levels is not None:
        hit &= np.isin(scene.levels, list(levels))
    idx = np.nonzero(hit)[0]
    return idx[:: max(1, -(-len(idx) // max_boxes))]


def crowd_image(image: np.ndarray, crowd_input: np.ndarray) -> np.ndarray:
    """The image with crowd regions (input scale) hatched as ignore regions (never matched); as is without any."""
    return overlay.draw_ignore_regions(image, crowd_input, label="crowd: not matched") if len(crowd_input) else image


def gt_image(image: np.ndarray, boxes_input: np.ndarray, classes: Sequence[str], assignment: Assignment) -> np.ndarray:
    """GT boxes with "index class" tabs; GTs with no positive anchor are highlighted in red."""
    cols = overlay.palette(len(boxes_input))
    labels = [f"{k} {c}" for k, c in enumerate(classes)]
    out = overlay.draw_boxes(image, boxes_input, labels=labels, colors=cols, thickness=2)
    bad = np.nonzero(assignment.no_positive)[0]
    if len(bad):
        out = overlay.highlight_boxes(out, boxes_input[bad], labels=[f"{k}: no positive" for k in bad])
    return out


def positives_image(
    image: np.ndarray,
    scene: AnchorScene,
    boxes_input: np.ndarray,
    assignment: Assignment,
    *,
    levels: Sequence[int] | None = None,
    color_by: str = "gt",
    show_ignored: bool = False,
    max_boxes: int = 4000,
) -> np.ndarray:
    """Positive anchors (coloured by matched GT or by level), optionally ignored anchors, over the GT boxes.

    Args:
        levels: level indices to show (default all).
        color_by: ``"gt"`` (the colour of the GT each anchor matches) or ``"level"``.
        show_ignored: also draw ignored anchors (yellow, thin).
        max_boxes: draw at most this many anchors per kind (an even subsample beyond it).
    """
    gt_cols = overlay.palette(len(boxes_input))
    out = np.asarray(image)
    if show_ignored:
        ign = _anchors_with(scene, assignment, IGNORED, levels, max_boxes)
        out = overlay.draw_anchor_boxes(out, scene.anchors[ign], LABEL_RGB[IGNORED], alpha=0.5)
    pos = _anchors_with(scene, assignment, POSITIVE, levels, max_boxes)
    if color_by == "level":
        cols = [overlay.LEVEL_COLORS[int(li) % len(overlay.LEVEL_COLORS)] for li in scene.levels[pos]]
    else:
        cols = [gt_cols[int(g)] for g in assignment.matched_gt[pos]]
    out = overlay.draw_anchor_boxes(out, scene.anchors[pos], cols, alpha=0.8)
    return overlay.draw_boxes(out, boxes_input, colors=gt_cols, thickness=3)


def ignored_image(
    image: np.ndarray,
    scene: AnchorScene,
    boxes_input: np.ndarray,
    assignment: Assignment,
    *,
    levels: Sequence[int] | None = None,
    max_boxes: int = 4000,
) -> np.ndarray:
    """Ignored anchors (neg <= max IoU < pos), coloured like the GT they overlap most, over the GT boxes."""
    gt_cols = overlay.palette(len(boxes_input))
    ign = _anchors_with(scene, assignment, IGNORED, levels, max_boxes)
    cols = [gt_cols[int(g)] for g in assignment.argmax_gt[ign]]
    out = overlay.draw_anchor_boxes(image, scene.anchors[ign], cols, alpha=0.7)
    return overlay.draw_boxes(out, boxes_input, colors=gt_cols, thickness=3)


def gt_focus_image(
    image: np.ndarray, scene: AnchorScene, boxes_input: np.ndarray, assignment: Assignment, gt: int
) -> np.ndarray:
    """One GT's story: its positive anchors (green), the ignored anchors it overlaps most (yellow) and its single
    best anchor (white, with the IoU), the other GTs dimmed to thin grey outlines."""
    if not 0 <= gt < len(boxes_input):
        raise ValueError(f"gt must be in [0, {len(boxes_input)}), got {gt}")
    others = np.delete(np.asarray(boxes_input), gt, axis=0)
    out = overlay.draw_boxes(image, others, colors=(160, 160, 160), thickness=1)
    ign = np.nonzero((assignment.label == IGNORED) & (assignment.argmax_gt == gt))[0]
    out = overlay.draw_anchor_boxes(out, scene.anchors[ign], LABEL_RGB[IGNORED], alpha=0.6)
    pos = np.nonzero(assignment.matched_gt == gt)[0]
    out = overlay.draw_anchor_boxes(out, scene.anchors[pos], LABEL_RGB[POSITIVE], thickness=2, alpha=0.9)
    color = overlay.UNMATCHED_COLOR if assignment.no_positive[gt] else (0, 200, 255)
    out = overlay.draw_boxes(out, boxes_input[gt : gt + 1], labels=[f"GT {gt}"], colors=color, thickness=3)
    best = int(assignment.best_anchor[gt])
    if best >= 0:
        lvl = scene.level_names[int(scene.levels[best])]
        out = overlay.draw_boxes(
            out,
            scene.anchors[best : best + 1],
            labels=[f"best {lvl} IoU {assignment.best_iou[gt]:.3f}"],
            colors=(255, 255, 255),
            thickness=2,
        )
    return out


def hard_negative_image(
    image: np.ndarray, scene: AnchorScene, boxes_input: np.ndarray, assignment: Assignment, *, cell: int = 8
) -> np.ndarray:
    """Density of hard-negative anchor centres (0 < max IoU < neg threshold) over the image, with the GT boxes."""
    hard = assignment.label == HARD_NEGATIVE
    a = scene.anchors[hard]
    centres = np.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2], axis=1)
    h, w = np.asarray(image).shape[:2]
    dens = overlay.density_map(centres, h, w, cell=cell)
    out = overlay.overlay_density(image, dens)
    return overlay.draw_boxes(out, boxes_input, colors=(255, 255, 255), thickness=1)


def location_image(image: np.ndarray, scene: AnchorScene, x: float, y: float, boxes_input: np.ndarray) -> np.ndarray:
    """Every anchor at the grid cell nearest to (x, y), coloured by level, with the GT boxes and a marker."""
    idx = anchors_at_point(x, y, scene.grids)
    cols = [overlay.LEVEL_COLORS[int(li) % len(overlay.LEVEL_COLORS)] for li in scene.levels[idx]]
    out = overlay.draw_boxes(image, boxes_input, colors=(255, 255, 255), thickness=1)
    out = overlay.draw_anchor_boxes(out, scene.anchors[idx], cols, thickness=2, alpha=0.9)
    return overlay.draw_marker(out, x, y)
