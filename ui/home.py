"""Cached figures for the home page: anchor counts and the sample dataset's summary."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from explorer import anchors, assign, overlay
from ui.common import sample_dataset_path


def _coco_xyxy(anns: list[dict]) -> np.ndarray:
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


@st.cache_data(max_entries=1, show_spinner=False)
def _load_sample(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


@st.cache_data(max_entries=1, show_spinner=False)
def anchor_facts() -> dict:
    """Anchor counts for the default torchvision RetinaNet and the labels of sample scene 1."""
    cfg = anchors.AnchorConfig()
    n800 = len(anchors.generate_anchors(800, 800, cfg)[0])
    n1333 = len(anchors.generate_anchors(800, 1333, cfg)[0])
    ann_path = sample_dataset_path()
    coco = _load_sample(str(ann_path))
    img = coco["images"][0]
    anns = [a for a in coco["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]]
    h, w = img["height"], img["width"]
    rh, rw = anchors.resized_size(h, w, cfg)
    boxes = _coco_xyxy(anns) * np.array([rw / w, rh / h, rw / w, rh / h])
    grid, levels = anchors.generate_anchors(rh, rw, cfg)
    grids = anchors.level_grids(rh, rw, cfg)
    result = assign.assign_max_iou(grid, boxes.astype(np.float32), levels=levels, grids=grids)
    counts = np.bincount(result.label, minlength=4)
    n_pos = int(counts[assign.POSITIVE])
    return {
        "anchors_800": n800,
        "anchors_1333": n1333,
        "image_hw": (h, w),
        "resized_hw": (rh, rw),
        "boxes": len(anns),
        "anchors": len(grid),
        "positives": n_pos,
        "ignored": int(counts[assign.IGNORED]),
        "hard": int(counts[assign.HARD_NEGATIVE]),
        "easy": int(counts[assign.EASY_NEGATIVE]),
        "easy_share": float(counts[assign.EASY_NEGATIVE] / len(grid)),
        "neg_per_pos": float((counts[assign.EASY_NEGATIVE] + counts[assign.HARD_NEGATIVE]) / max(1, n_pos)),
    }


@st.cache_data(max_entries=1, show_spinner=False)
def sample_info() -> dict:
    """Summary of the sample dataset: sizes, per-class counts and a preview image with boxes."""
    ann_path = sample_dataset_path()
    coco = _load_sample(str(ann_path))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    counts = Counter(a["category_id"] for a in coco["annotations"])
    per_class = pd.DataFrame(
        {"class": [names[k] for k in names], "boxes": [counts.get(k, 0) for k in names]}
    ).sort_values("boxes", ascending=False)
    areas = np.array([a["area"] for a in coco["annotations"]])
    tiles = []
    for img in coco["images"][:2]:
        arr = np.asarray(Image.open(ann_path.parent / "images" / img["file_name"]).convert("RGB"))
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        labels = [names[a["category_id"]] for a in anns]
        tiles.append(overlay.draw_boxes(arr, _coco_xyxy(anns), labels=labels))
    sizes = {(i["width"], i["height"]) for i in coco["images"]}
    return {
        "path": str(ann_path.parent),
        "images": len(coco["images"]),
        "size": ", ".join(f"{w}×{h}" for w, h in sorted(sizes)),
        "boxes": len(coco["annotations"]),
        "classes": len(names),
        "small_share": float((areas < 32**2).mean()) if len(areas) else 0.0,
        "per_class": per_class,
        "preview": np.concatenate(tiles, axis=1),
    }
