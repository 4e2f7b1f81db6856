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
    """``{"AP": ..., "AP50": ...}`` over ``image_ids`` (NaN when there is no box to find, 0 without detections).

    Args:
        ds: the dataset; detections: rows ``image_id, category_id, x, y, w, h, score``; image_ids: the scanned ids.
    """
    return ap_report(ds, detections, image_ids)[0]


def per_class_ap(ds: CocoDataset, detections: pd.DataFrame, image_ids: list) -> pd.DataFrame:
    """Per category: AP (IoU 0.5:0.95) and AP50 (see :func:`ap_report`)."""
    return ap_report(ds, detections, image_ids)[1]


def ap_report(ds: CocoDataset, detections: pd.DataFrame, image_ids: list) -> tuple[dict[str, float], pd.DataFrame]:
    """AP and AP50 overall (``COCOeval.stats[0:2]``) and per category from one ``COCOeval`` run: a category's AP is
    the mean of its precision entries as ``COCOeval.summarize`` averages them (area all, 100 detections); NaN for a
    category with no box in the scanned images. The table's columns: ``category_id, AP, AP50``."""
    ev = coco_eval(ds, detections, image_ids)
    ids = [int(c) for c in ds.category_ids]
    if ev is None or isinstance(ev, float):
        value = float("nan") if ev is None else ev
        return {"AP": value, "AP50": value}, pd.DataFrame({"category_id": ids, "AP": value, "AP50": value})
    precision = ev.eval["precision"]  # (T IoU thresholds, R recall points, K categories, A areas, M max dets)
    rows = []
    for k, cat in enumerate(ev.params.catIds):
        p_all, p50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
        rows.append(
            {
                "category_id": int(cat),
                "AP": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else float("nan"),
                "AP50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan"),
            }
        )
    overall = {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}
    return overall, pd.DataFrame(rows, columns=["category_id", "AP", "AP50"])


def coco_eval(ds: CocoDataset, detections: pd.DataFrame, image_ids: list):  # -> COCOeval | float | None
    """pycocotools' ``COCOeval`` (bbox) of the detections on ``image_ids``, evaluated, accumulated and summarized;
    None when the images hold no non-crowd box, 0.0 when there is no detection (COCOeval cannot load none)."""
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
        return None
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
            return 0.0
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.imgIds = list(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _plain(value: object) -> object:
    """A numpy scalar id as a Python value (pycocotools keys its indexes by id)."""
    return value.item() if isinstance(value, np.generic) else value
