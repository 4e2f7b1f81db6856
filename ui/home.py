"""Cached figures for the home page: anchor counts and the sample dataset's summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import overlay
from explorer.anchors import grid as anchors
from explorer.anchors import lab as anchor_lab
from explorer.anchors.counts import anchor_count
from explorer.anchors.max_iou import assign_max_iou
from explorer.dataset.coco import AREA_SMALL
from explorer.dataset.image_boxes import boxes_from_coco
from ui.common import sample_dataset, sample_dataset_image, sample_dataset_path


@st.cache_data(max_entries=1, show_spinner=False)
def anchor_facts() -> dict:
    """Anchor counts for the default torchvision RetinaNet and the labels of sample scene 1."""
    cfg = anchors.AnchorConfig()
    ds = sample_dataset()
    h, w = int(ds.heights[0]), int(ds.widths[0])
    scene = anchor_lab.prepare_scene(h, w, cfg)
    gts = boxes_from_coco(ds, ds.file_names[0], w, h)
    result = assign_max_iou(scene.anchors, scene.to_input(gts.boxes), levels=scene.levels, grids=scene.grids)
    stats = anchor_lab.summary(result, 0.5)
    return {
        "anchors_800": anchor_count(800, 800, cfg),
        "anchors_1333": anchor_count(800, 1333, cfg),
        "image_hw": (h, w),
        "resized_hw": scene.resized_hw,
        "boxes": len(gts.boxes),
        "anchors": stats["anchors"],
        "positives": stats["positive"],
        "ignored": stats["ignored"],
        "hard": stats["hard negative"],
        "easy": stats["easy negative"],
        "easy_share": stats["easy negative"] / stats["anchors"],
        "neg_per_pos": stats["negatives per positive"],
    }


@st.cache_data(max_entries=1, show_spinner=False)
def sample_info() -> dict:
    """Summary of the sample dataset: sizes, per-class counts and a preview image with boxes."""
    ds = sample_dataset()
    counts = [int((ds.ann_category == c).sum()) for c in ds.category_ids.tolist()]
    per_class = pd.DataFrame({"class": ds.category_names, "boxes": counts}).sort_values("boxes", ascending=False)
    tiles = []
    for name in ds.file_names[:2]:
        arr = sample_dataset_image(name)
        gts = boxes_from_coco(ds, name, arr.shape[1], arr.shape[0])
        tiles.append(overlay.draw_boxes(arr, gts.boxes, labels=gts.classes))
    sizes = set(zip(ds.widths.tolist(), ds.heights.tolist(), strict=True))
    return {
        "path": str(sample_dataset_path().parent),
        "images": ds.num_images,
        "size": ", ".join(f"{w}×{h}" for w, h in sorted(sizes)),
        "boxes": ds.num_annotations,
        "classes": len(ds.category_ids),
        "small_share": float((ds.areas < AREA_SMALL).mean()) if ds.num_annotations else 0.0,
        "per_class": per_class,
        "preview": np.concatenate(tiles, axis=1),
    }
