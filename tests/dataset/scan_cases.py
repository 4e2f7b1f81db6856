"""Shared cases of the scan tests: COCO records, the edge-case dataset, the image-by-image torchvision check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_reference import TorchvisionReference


def write_json(tmp_path: Path, coco: dict, name: str = "a.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(coco))
    return path


def assert_matches_torchvision(path: Path, cfg: ScanConfig | None = None, limit: int | None = None) -> None:
    cfg = cfg or ScanConfig()
    ds = load_coco(path)
    result = scan_dataset(ds, cfg, device="cpu")
    a = cfg.anchors
    ref = TorchvisionReference(
        COCO(str(path)),
        sizes=a.sizes,
        aspect_ratios=a.aspect_ratios,
        strides=a.strides,
        min_size=a.min_size,
        max_size=a.max_size,
        pos_thresh=cfg.pos_thresh,
        neg_thresh=cfg.neg_thresh,
        low_quality=cfg.low_quality,
    )
    images, boxes = result.images, result.boxes
    level_cols = [c for c in images.columns if c.startswith("pos_P")]
    n = len(images) if limit is None else min(limit, len(images))
    for i in range(n):
        r = ref.image_stats(ds.image_ids[i].item())
        row = images.iloc[i]
        got = (row.positives, row.ignored, row.hard_negatives, row.easy_negatives, row.anchors)
        want = (r["positives"], r["ignored"], r["hard"], r["easy"], r["anchors"])
        assert got == want, f"image {ds.image_ids[i]}: scan {got} != torchvision {want}"
        assert (row.input_height, row.input_width) == tuple(r["input_hw"])
        np.testing.assert_array_equal(row[level_cols].to_numpy(dtype=np.int64), r["level_pos"])
        b = boxes[boxes.image_index == i]
        np.testing.assert_array_equal(b[["x1", "y1", "x2", "y2"]].to_numpy(), r["gt"])
        np.testing.assert_array_equal(b.num_positive.to_numpy(), r["box_pos"])
        np.testing.assert_array_equal(b.best_iou.to_numpy(), r["box_best"])
        np.testing.assert_array_equal(b.low_quality_only.to_numpy(), r["box_lq_only"])
        assert row.boxes_no_positive == int((r["box_pos"] == 0).sum())


def coco_image(image_id, width=640, height=480):
    return {"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height}


def coco_ann(ann_id, image_id, bbox, iscrowd=0, category_id=1):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(bbox),
        "iscrowd": iscrowd,
        "area": float(bbox[2] * bbox[3]),
    }


def edge_case_coco() -> dict:
    images = [
        coco_image(1),  # no boxes at all
        coco_image(2),  # only crowd boxes
        coco_image(3),  # tiny boxes, at borders and inside
        coco_image(4, 2000, 100),  # extreme aspect ratio: max_size caps the scale
        coco_image(5, 333, 500),  # portrait, upscaled
        coco_image(6),  # identical boxes (argmax ties), nested boxes, a box covering the image
        coco_image(7, 17, 23),  # a very small image
        coco_image(8),  # a box thinner than a thousandth of a pixel: reference path
    ]
    anns = [
        coco_ann(1, 2, (10, 10, 200, 100), iscrowd=1),
        coco_ann(2, 2, (300, 200, 50, 50), iscrowd=1),
        coco_ann(3, 3, (0, 0, 1, 1)),
        coco_ann(4, 3, (639, 479, 1, 1)),
        coco_ann(5, 3, (320.3, 240.7, 0.5, 2.25)),
        coco_ann(6, 3, (100, 100, 3, 3)),
        coco_ann(7, 3, (101, 100, 3, 3)),
        coco_ann(8, 4, (0, 0, 2000, 100)),
        coco_ann(9, 4, (1500, 20, 30, 60)),
        coco_ann(10, 5, (10.5, 20.25, 100, 300)),
        coco_ann(11, 5, (200, 400, 133, 100)),
        coco_ann(12, 6, (50, 60, 200, 150)),
        coco_ann(13, 6, (50, 60, 200, 150)),
        coco_ann(14, 6, (80, 90, 40, 30)),
        coco_ann(15, 6, (0, 0, 640, 480)),
        coco_ann(16, 6, (600, 10, 40, 460), iscrowd=1),
        coco_ann(17, 7, (2, 3, 10, 12)),
        coco_ann(18, 8, (100, 100, 1e-5, 40)),
        coco_ann(19, 8, (300, 200, 60, 60)),
    ]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
