"""The scan equals torchvision's own parts image by image (transform, AnchorGenerator, box_iou, Matcher), on
coco-mini, the sample, edge cases and other configurations."""

from __future__ import annotations

import pytest

from explorer import synthetic
from explorer.anchors.grid import default_config
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from tests.dataset.scan_cases import assert_matches_torchvision, edge_case_coco, write_json


def test_synthetic_dataset_matches_torchvision(tmp_path):
    coco, _ = synthetic.make_dataset(12, seed=11)
    assert_matches_torchvision(write_json(tmp_path, coco))


@pytest.mark.parametrize("name", ["instances_val2017.json", "instances_train2017.json"])
def test_coco_mini_matches_torchvision(coco_mini, name):
    assert_matches_torchvision(coco_mini / "annotations" / name)


def test_edge_cases_match_torchvision(tmp_path):
    coco = edge_case_coco()
    path = write_json(tmp_path, coco)
    assert_matches_torchvision(path)
    result = scan_dataset(load_coco(path), device="cpu")
    im = result.images.set_index("image_id")
    assert im.loc[1, "positives"] == 0 and im.loc[1, "easy_negatives"] == im.loc[1, "anchors"]
    assert im.loc[2, "boxes"] == 0 and im.loc[2, "crowd_boxes"] == 2
    assert im.loc[2, "positives"] == 0 and im.loc[2, "hard_negatives"] == 0
    assert im.loc[6, "crowd_boxes"] == 1 and im.loc[6, "boxes"] == 4
    assert result.reference_images == 1  # image 8's 1e-5 px box goes through the reference path


@pytest.mark.parametrize(
    "cfg",
    [
        ScanConfig(pos_thresh=0.6, neg_thresh=0.3),
        ScanConfig(pos_thresh=0.5, neg_thresh=0.5),
        ScanConfig(low_quality=False),
        ScanConfig(anchors=default_config(min_size=512, max_size=853)),
        ScanConfig(anchors=default_config(sizes=((24, 36), (48, 72), (96, 144)), strides=(8, 16, 32))),
    ],
    ids=["pos0.6-neg0.3", "no-ignore-band", "no-low-quality", "512px", "3-levels"],
)
def test_configurations_match_torchvision(tmp_path, cfg):
    coco, _ = synthetic.make_dataset(3, seed=5)
    coco["images"] += edge_case_coco()["images"]
    for k, a in enumerate(edge_case_coco()["annotations"]):
        coco["annotations"].append({**a, "id": 10_000 + k, "image_id": a["image_id"]})
    for im in coco["images"][3:]:
        im["id"] += 1000
    for a in coco["annotations"][-19:]:
        a["image_id"] += 1000
    assert_matches_torchvision(write_json(tmp_path, coco), cfg)
