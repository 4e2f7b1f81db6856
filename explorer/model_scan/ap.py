"""COCO AP and AP50 of the scanned images, by pycocotools' own ``COCOeval`` (bbox, 100 detections per image).

The ground truth is the scanned images' annotations as the reader kept them (crowd flags and areas included, boxes
clamped to the image as torchvision's references clamp them), the detections those the model scan recorded.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd

from explorer.dataset.coco import CocoDataset


def coco_ap(ds: CocoDataset, detections: pd.DataFrame, image_ids: list) -> dict[str, float]:
    """``{"AP": ..., "AP50": ...}`` over ``image_ids`` (NaN when there is no box to find).

    Args:
        ds: the dataset; detections: rows ``image_id, category_id, x, y, w, h, score``; image_ids: the scanned ids.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    wanted = set(image_ids)
    keep = np.array([i in wanted for i in ds.image_ids.tolist()], bool)
    index = np.flatnonzero(keep)
    anns = []
    for i in index:
        rows = ds.annotations_of(int(i))
        for k in range(rows.start, rows.stop):
            x1, y1, x2, y2 = (float(v) for v in ds.boxes_xyxy[k])
            anns.append(
                {"id": len(anns) + 1, "image_id": _plain(ds.image_ids[i]), "category_id": int(ds.ann_category[k]),
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(ds.areas[k]), "iscrowd": int(ds.iscrowd[k])}
            )  # fmt: skip
    if not any(a["iscrowd"] == 0 for a in anns):
        return {"AP": float("nan"), "AP50": float("nan")}
    gt = COCO()
    gt.dataset = {
        "images": [{"id": _plain(x)} for x in ds.image_ids[index]],
        "annotations": anns,
        "categories": [{"id": int(c), "name": n} for c, n in zip(ds.category_ids, ds.category_names, strict=True)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = [
            {"image_id": _plain(r.image_id), "category_id": int(r.category_id), "bbox": [r.x, r.y, r.w, r.h],
             "score": float(r.score)}
            for r in detections.itertuples(index=False)
        ]  # fmt: skip
        if not dets:
            return {"AP": 0.0, "AP50": 0.0}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = list(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}


def _plain(value: object) -> object:
    """A numpy scalar id as a Python value (pycocotools keys its indexes by id)."""
    return value.item() if isinstance(value, np.generic) else value
