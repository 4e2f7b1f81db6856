"""Tests of explorer.detection.view: sample scenes, ground truth looked up by image name, overlays, categories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.dataset.coco import load_coco
from explorer.detection.evaluation import match_detections
from explorer.detection.view import category_mismatch, draw_detections, gt_for_image, sample_scene

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
    boxes, labels = gt_for_image(ds, "a.jpg")
    assert boxes.tolist() == [[1.0, 2.0, 11.0, 22.0]] and labels.tolist() == [1]
    assert gt_for_image(ds, "b.jpg") is None
    m = match_detections(result.detections, scene.gt_boxes, scene.gt_labels)
    canvas = draw_detections(scene.image, result.detections, demo.class_names, matching=m, gt_boxes=scene.gt_boxes)
    assert canvas.shape == scene.image.shape and not np.array_equal(canvas, scene.image)
    with pytest.raises(ValueError, match="color_by"):
        draw_detections(scene.image, result.detections, demo.class_names, color_by="size")


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
