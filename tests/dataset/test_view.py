"""explorer.dataset.view: how an IoU is written next to a threshold; one image's boxes, labels and crowd regions
agree with the Anchor lab's."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.anchors import lab
from explorer.anchors.grid import default_config
from explorer.dataset.coco import load_coco
from explorer.dataset.image_boxes import boxes_from_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.view import image_boxes, iou_text, labeled_anchor_image
from explorer.overlay import CROWD_COLOR


@pytest.mark.parametrize(
    ("iou", "threshold", "text"),
    [(0.43, 0.5, "0.43"), (0.4996, 0.5, "0.4996"), (0.49999999, 0.5, "0.49999999"), (0.5, 0.5, "0.50")],
)
def test_iou_text_never_reads_as_reaching_the_threshold(iou, threshold, text):
    assert iou_text(iou, threshold) == text


def test_every_page_reads_the_same_boxes_and_labels_of_coco_mini(coco_mini):
    """One COCO reader: the Anchor lab (boxes by file name, scaled by torchvision's float32 ratio, labelled) gives
    every image of coco-mini the scan's counts (Dataset diagnostics), crowd regions left out of both."""
    ds = load_coco(coco_mini / "annotations" / "instances_train2017.json")
    config = ScanConfig()
    result = scan_dataset(ds, config, device="cpu")
    crowd_images = 0
    for index, row in result.images.iterrows():
        h, w = int(row["height"]), int(row["width"])
        gts = boxes_from_coco(ds, row["file_name"], w, h)
        scene = lab.prepare_scene(h, w, config.anchors)
        boxes_in = scene.to_input(gts.boxes)
        assignment = lab.label_anchors(scene, boxes_in, lab.compute_sparse(scene, boxes_in))
        stats = lab.summary(assignment, config.pos_thresh)
        got = [stats["positive"], stats["ignored"], stats["hard negative"], stats["easy negative"]]
        assert got == row[["positives", "ignored", "hard_negatives", "easy_negatives"]].tolist(), row["file_name"]
        scan_boxes, _, crowd = image_boxes(ds, result, index)
        np.testing.assert_array_equal(boxes_in, scan_boxes)
        np.testing.assert_array_equal(crowd, scene.to_input(gts.crowd))
        crowd_images += len(crowd) > 0
    assert crowd_images > 0  # coco-mini has crowd regions: the comparison covers them


def test_crowd_regions_are_hatched_in_the_image_views():
    image = np.full((96, 128, 3), 40, np.uint8)
    config = ScanConfig(anchors=default_config("torchvision", min_size=96, max_size=128))
    boxes = np.array([[10, 10, 40, 40]], np.float32)
    crowd = np.array([[60, 20, 120, 90]], np.float32)
    plain, stats = labeled_anchor_image(image, boxes, config)
    hatched, stats_crowd = labeled_anchor_image(image, boxes, config, crowd_input=crowd)
    assert stats == stats_crowd  # drawn only: never matched
    inside = hatched[22:88, 62:118]
    assert (inside == CROWD_COLOR).all(axis=-1).any() and not np.array_equal(
        hatched[22:88, 62:118], plain[22:88, 62:118]
    )
    np.testing.assert_array_equal(hatched[25:, :55], plain[25:, :55])  # (above row 22: the region's tab)
