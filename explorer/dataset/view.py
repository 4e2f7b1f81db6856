"""Views of Dataset diagnostics: one image with its labeled anchors, crops of boxes that have no positive, and the
tables behind the image list and the gallery.

Uses the Anchor lab's core (:mod:`explorer.anchors.lab`) so an image selected in the dataset table is shown exactly
as the Anchor lab would show it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer import overlay
from explorer.anchors import lab as anchor_lab
from explorer.boxes import scale_boxes
from explorer.dataset.coco import CocoDataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_result import ScanResult

#: Crops shown in the gallery of boxes without a positive (the smallest first; the table lists them all).
GALLERY_SIZE = 24


def labeled_anchor_image(
    image: np.ndarray,
    boxes_input: np.ndarray,
    config: ScanConfig,
    *,
    classes: Sequence[str] | None = None,
    crowd_input: np.ndarray | None = None,
    show_ignored: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """The image resized as the network sees it, with positive (and ignored) anchors and the GT boxes.

    Args:
        image: (H, W, 3) uint8 RGB at the original size.
        boxes_input: (K, 4) float32 non-crowd boxes at the input scale (from the scan's boxes table).
        config: the scan configuration (anchors, thresholds, low-quality rule).
        classes: one label per box (drawn on the GT tab).
        crowd_input: (C, 4) crowd regions at the input scale, hatched (left out of matching).
        show_ignored: also draw ignored anchors.

    Returns:
        ``(picture, summary)``: (h, w, 3) uint8 at the resized input size; the Anchor lab's headline numbers.
    """
    h, w = image.shape[:2]
    scene = anchor_lab.prepare_scene(h, w, config.anchors)
    boxes = np.asarray(boxes_input, np.float32).reshape(-1, 4)
    sparse = anchor_lab.compute_sparse(scene, boxes)
    assignment = anchor_lab.label_anchors(
        scene,
        boxes,
        sparse,
        pos_thresh=config.pos_thresh,
        neg_thresh=config.neg_thresh,
        low_quality=config.low_quality,
    )
    resized = overlay.resize_image(image, *scene.resized_hw)
    if crowd_input is not None:
        resized = anchor_lab.crowd_image(resized, np.asarray(crowd_input, np.float32).reshape(-1, 4))
    picture = anchor_lab.positives_image(resized, scene, boxes, assignment, show_ignored=show_ignored)
    labels = list(classes) if classes is not None else [""] * len(boxes)
    picture = anchor_lab.gt_image(picture, boxes, labels, assignment)
    return picture, anchor_lab.summary(assignment, config.pos_thresh)


def box_crop(image: np.ndarray, box_xyxy: Sequence[float], *, margin: float = 0.5, min_side: int = 48) -> np.ndarray:
    """A crop around one box (original-image pixels) with the box outlined, at least ``min_side`` pixels.

    Args:
        image: (H, W, 3) uint8 RGB.
        box_xyxy: the box at the image's scale.
        margin: context added on each side, as a fraction of the box size (at least 8 px).
        min_side: upscale small crops so their shorter side is at least this.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    mx = max(8.0, (x2 - x1) * margin)
    my = max(8.0, (y2 - y1) * margin)
    cx1, cy1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    cx2, cy2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"box {list(box_xyxy)} lies outside the {w}x{h} image")
    crop = overlay.draw_boxes(
        image[cy1:cy2, cx1:cx2], np.array([[x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1]]), thickness=1
    )
    short = min(crop.shape[:2])
    if short < min_side:
        f = min_side / short
        crop = overlay.resize_image(crop, round(crop.shape[0] * f), round(crop.shape[1] * f))
    return crop


def iou_text(iou: float, threshold: float, *, digits: int = 2) -> str:
    """An IoU written with enough decimals that it never reads as reaching ``threshold`` when it does not.

    A box whose best anchor has IoU 0.4996 failed ``IoU >= 0.5``; "0.50" would say it passed.

    Example:
        >>> iou_text(0.4996, 0.5), iou_text(0.43, 0.5), iou_text(0.5, 0.5), iou_text(0.49999999, 0.5)
        ('0.4996', '0.43', '0.50', '0.49999999')
    """
    text = f"{iou:.{digits}f}"
    while iou < threshold and float(text) >= threshold and digits < 12:
        digits += 1
        text = f"{iou:.{digits}f}"
    return text


def filter_images(images, *, only_problem: bool, min_boxes: int, sort_by: str, descending: bool, limit: int = 5000):
    """The per-image table filtered (images with a box that has no positive, at least ``min_boxes`` boxes),
    sorted, and cut to ``limit`` rows for display."""
    df = images
    if only_problem:
        df = df[df["boxes_no_positive"] > 0]
    if min_boxes > 0:
        df = df[df["boxes"] >= min_boxes]
    df = df.sort_values(sort_by, ascending=not descending, kind="stable")
    return df.head(limit)


def no_positive_rows(ds: CocoDataset, result: ScanResult, pos_thresh: float, limit: int = GALLERY_SIZE) -> list:
    """(file_name, original-scale box, caption) of the smallest boxes without a positive anchor; the best IoU is
    written with enough digits to read below ``pos_thresh``."""
    b = result.boxes_without_positive().head(limit)
    names = dict(zip(ds.category_ids.tolist(), ds.category_names, strict=True))
    rows = []
    for r in b.itertuples():
        box = tuple(float(v) for v in ds.boxes_xyxy[r.ann_row])
        name, iou = names.get(r.category_id, r.category_id), iou_text(r.best_iou, pos_thresh)
        caption = f"{name} · {r.width:.0f}×{r.height:.0f} px · best IoU {iou}"
        rows.append((ds.file_names[r.image_index], box, caption))
    return rows


def image_boxes(ds: CocoDataset, result: ScanResult, index: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Input-scale boxes (K, 4) float32 and class names of image ``index`` (non-crowd, file order, from the scan's
    boxes table), and its crowd regions (C, 4) float32 scaled to the input as torchvision scales boxes."""
    b = result.boxes[result.boxes["image_index"] == index]
    names = dict(zip(ds.category_ids.tolist(), ds.category_names, strict=True))
    boxes = b[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
    row = result.images.loc[index]
    original_hw = (int(ds.heights[index]), int(ds.widths[index]))
    input_hw = (int(row["input_height"]), int(row["input_width"]))
    crowd = scale_boxes(ds.image_annotations(index).crowd_xyxy, original_hw, input_hw)
    return boxes, [names.get(c, str(c)) for c in b["category_id"].tolist()], crowd
