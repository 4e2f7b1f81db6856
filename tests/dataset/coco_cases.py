"""Shared cases of the COCO tests: records built here (detectron2 style) and problem-table lookups."""

from __future__ import annotations


def image_rec(image_id, width=100, height=80, **extra):
    return {"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height, **extra}


def ann_rec(ann_id, image_id=1, bbox=(10, 20, 30, 40), category_id=1, iscrowd=0, **extra):
    rec = {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), "iscrowd": iscrowd}
    ok = len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
    rec["area"] = float(bbox[2] * bbox[3]) if ok else 0.0
    rec["segmentation"] = [[10, 20, 40, 20, 40, 60]]
    rec.update(extra)
    return rec


def coco_dict(images=None, annotations=None, categories=None) -> dict:
    return {
        "images": [image_rec(1), image_rec(2, 64, 48)] if images is None else images,
        "annotations": [] if annotations is None else annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}] if categories is None else categories,
    }


def problem_kinds(ds) -> list[str]:
    return ds.problems["kind"].tolist()


def only(ds, kind: str):
    rows = ds.problems[ds.problems["kind"] == kind]
    assert len(rows) == 1, ds.problems.to_string()
    return rows.iloc[0]
