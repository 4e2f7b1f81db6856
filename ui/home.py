"""Cached figures for the home page: anchor counts and the sample dataset's summary."""

from __future__ import annotations

from collections import Counter

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
from ui.common import sample_coco, sample_dataset_image, sample_dataset_path


@st.cache_data(max_entries=1, show_spinner=False)
def anchor_facts() -> dict:
    """Anchor counts for the default torchvision RetinaNet and the labels of sample scene 1."""
    cfg = anchors.AnchorConfig()
    img = sample_coco()["images"][0]
    h, w = img["height"], img["width"]
    scene = anchor_lab.prepare_scene(h, w, cfg)
    gts = boxes_from_coco(sample_coco(), img["file_name"], w, h)
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
    coco = sample_coco()
    names = {c["id"]: c["name"] for c in coco["categories"]}
    counts = Counter(a["category_id"] for a in coco["annotations"])
    per_class = pd.DataFrame({"class": list(names.values()), "boxes": [counts.get(k, 0) for k in names]}).sort_values(
        "boxes", ascending=False
    )
    areas = np.array([a["area"] for a in coco["annotations"]])
    tiles = []
    for img in coco["images"][:2]:
        arr = sample_dataset_image(img["file_name"])
        gts = boxes_from_coco(coco, img["file_name"], arr.shape[1], arr.shape[0])
        tiles.append(overlay.draw_boxes(arr, gts.boxes, labels=gts.classes))
    sizes = {(i["width"], i["height"]) for i in coco["images"]}
    return {
        "path": str(sample_dataset_path().parent),
        "images": len(coco["images"]),
        "size": ", ".join(f"{w}×{h}" for w, h in sorted(sizes)),
        "boxes": len(coco["annotations"]),
        "classes": len(names),
        "small_share": float((areas < AREA_SMALL).mean()) if len(areas) else 0.0,
        "per_class": per_class,
        "preview": np.concatenate(tiles, axis=1),
    }
