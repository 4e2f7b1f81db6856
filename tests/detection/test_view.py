"""Tests of explorer.detection.view: sample scenes, ground truth looked up by image name, overlays, categories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.dataset.coco import load_coco
from explorer.detection.evaluation import match_detections
from explorer.detection.outputs import Detections
from explorer.detection.view import category_mismatch, detections_table, draw_detections, sample_scene

CPU = torch.device("cpu")


def test_sample_scenes_and_gt_lookup(scene, demo, result):
    assert scene.gt_boxes.shape == (len(scene.gt_labels), 4) and scene.gt_labels.min() >= 1
    with pytest.raises(ValueError, match="sample scene index"):
        sample_scene(99)
    coco = {
        "images": [{"id": 1, "file_name": "dir/a.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "circle"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0, "area": 200},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 1, "area": 100},
        ],
    }
    ds = load_coco(coco)
    ann = ds.image_annotations(ds.index_of("a.jpg"))
    assert ann.boxes_xyxy.tolist() == [[1.0, 2.0, 11.0, 22.0]] and ann.category_ids.tolist() == [1]
    assert ann.crowd_xyxy.tolist() == [[5.0, 5.0, 15.0, 15.0]] and ann.crowd_category_ids.tolist() == [1]
    assert ds.index_of("b.jpg") is None
    m = match_detections(result.detections, scene.gt_boxes, scene.gt_labels)
    canvas = draw_detections(scene.image, result.detections, demo.class_names, matching=m, gt_boxes=scene.gt_boxes)
    assert canvas.shape == scene.image.shape and not np.array_equal(canvas, scene.image)
    with pytest.raises(ValueError, match="color_by"):
        draw_detections(scene.image, result.detections, demo.class_names, color_by="size")


def test_detections_on_a_crowd_region_are_neither_tp_nor_fp_as_in_cocoeval():
    """COCOeval: a detection left unmatched that lies in a crowd region of its class (intersection / detection area
    >= the IoU threshold) is ignored; outside it, or of another class, it stays a false positive."""
    boxes = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [102, 102, 110, 130], [100, 100, 110, 110]], np.float32)
    dets = Detections(boxes, np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.array([1, 1, 1, 2]), np.zeros(4, int))
    crowd = np.array([[95, 95, 125, 125]], np.float32)
    gt_boxes, gt_labels = np.array([[0, 0, 10, 11]], np.float32), np.array([1])
    m = match_detections(dets, gt_boxes, gt_labels, crowd_boxes=crowd, crowd_labels=[1])
    assert m.is_tp.tolist() == [True, False, False, False]
    # det 1 lies wholly inside (1.0), det 2 is 184 / 224 = 0.82 inside, det 3 is inside but of class 2
    assert m.on_crowd.tolist() == [False, True, True, False] and m.is_fp.tolist() == [False, False, False, True]
    assert m.counts() == {"true positives": 1, "false positives": 1, "missed": 0, "on crowd (ignored)": 2}
    assert detections_table(dets, {1: "a", 2: "b"}, m)["result"].tolist() == ["TP", "on crowd", "on crowd", "FP"]
    plain = match_detections(dets, gt_boxes, gt_labels)
    assert plain.is_fp.tolist() == [False, True, True, True] and "on crowd (ignored)" not in plain.counts()
    image = np.zeros((140, 140, 3), np.uint8)
    drawn = draw_detections(image, dets, {1: "a", 2: "b"}, matching=m, crowd_boxes=crowd, show_labels=False)
    assert tuple(drawn[100, 105]) == (215, 215, 215)  # the grey of a detection on a crowd region


def test_category_mismatch_compares_names_not_only_ids():
    ds = load_coco(
        {
            "images": [{"id": 1, "width": 50, "height": 50}],
            "categories": [{"id": 1, "name": "Person"}, {"id": 2, "name": "traffic  light"}, {"id": 5, "name": "x"}],
            "annotations": [],
        }
    )
    coco_like = {1: "person", 2: "Traffic light"}
    assert category_mismatch(ds, np.array([1, 2, 1]), coco_like) is None  # case and spaces ignored
    assert category_mismatch(ds, np.array([], np.int64), {}) is None
    assert category_mismatch(ds, np.array([1, 5]), {1: "class 1", 5: "class 5"}) is None  # unnamed: ids trusted
    msg = category_mismatch(ds, np.array([1, 5]), {1: "circle", 2: "square"})
    assert msg is not None
    assert "id 1 is 'Person' in the JSON but 'circle' for the model" in msg and "id 5 'x' is not a model class" in msg
