"""The model scan's per-image losses equal torchvision's compute_loss (demo model on the sample; a seeded random
retinanet_resnet50_fpn on coco-mini), and its splits add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.image_stores import FolderImages
from explorer.detection.architectures import LoadedModel, build_model, coco_class_names, to_inference
from explorer.detection.inference import run_inference
from explorer.detection.loading import load_demo_model
from explorer.images import decode_image
from explorer.labels import AnchorLabel
from explorer.model_scan.image_stats import COUNTED, GAMMAS, LossSettings, gamma_column, image_losses
from tests.model_scan.reference import torchvision_losses

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_demo_model(CPU)


def _check_against_torchvision(loaded: LoadedModel, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray):
    result = run_inference(loaded, image)
    settings = LossSettings(box_loss=loaded.model.head.regression_head._loss_type)
    row = image_losses(result.dense, boxes, labels, settings).row
    ref = torchvision_losses(loaded.model, image, boxes, labels)
    assert row["positives"] == ref["positives"] and row["ignored"] == ref["ignored"]
    for ours, theirs in (("focal_loss", "focal"), ("ce_loss", "ce"), ("box_loss", "box")):
        assert row[ours] == pytest.approx(ref[theirs], rel=1e-5, abs=1e-7), ours
    return row


def test_sample_losses_equal_torchvisions_compute_loss(demo):
    path = synthetic.sample_dataset()
    ds = load_coco(path)
    store = FolderImages(path.parent / "images")
    for index in range(3):
        ann = ds.image_annotations(index)
        image = decode_image(store.read(ds.file_names[index]))
        row = _check_against_torchvision(demo, image, ann.boxes_xyxy, ann.category_ids)
        assert row["positives"] > 0


def test_an_image_without_boxes_is_all_background(demo):
    image = synthetic.make_scene(5)[0]
    row = _check_against_torchvision(demo, image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert row["positives"] == 0 and row["normalizer"] == 1 and row["box_loss"] == 0


def test_coco_mini_losses_equal_torchvisions_with_a_seeded_random_retinanet(coco_mini):
    torch.manual_seed(0)
    model = to_inference(build_model("retinanet_resnet50_fpn", 91), CPU)
    loaded = LoadedModel(model, "retinanet_resnet50_fpn", "checkpoint", coco_class_names(), CPU)
    ds = load_coco(coco_mini / "annotations" / "instances_train2017.json")
    store = FolderImages(coco_mini / "train2017")
    for name in ("000000174375.jpg",):  # crowd regions (left out, as torchvision) and 32 boxes
        index = ds.index_of(name)
        ann = ds.image_annotations(index)
        _check_against_torchvision(loaded, decode_image(store.read(name)), ann.boxes_xyxy, ann.category_ids)


def test_splits_add_up_and_gammas_are_exact(demo):
    image, anns = synthetic.make_scene(11)
    boxes, labels = synthetic.scene_targets(anns)
    dense = run_inference(demo, image).dense
    settings = LossSettings(alpha=0.25, gamma=2.0)
    row = image_losses(dense, boxes, labels, settings).row
    norm = row["normalizer"]
    for kind in ("focal", "ce"):
        groups = sum(row[f"{g.column}_{kind}"] for g in COUNTED)
        levels = sum(row[f"P{k}_{kind}"] for k in range(3, 8))
        by_pt = sum(row[f"{g.column}_{e}_pt_{kind}"] for g in COUNTED for e in ("easy", "hard"))
        for total in (groups, levels, by_pt):
            assert total / norm == pytest.approx(row[f"{kind}_loss"], rel=1e-9)
    assert row[gamma_column(2.0)] == pytest.approx(row["focal_loss"], rel=1e-9)
    for gamma in GAMMAS:
        other = image_losses(dense, boxes, labels, LossSettings(alpha=0.25, gamma=gamma)).row
        assert row[gamma_column(gamma)] == pytest.approx(other["focal_loss"], rel=1e-9)
    assert sum(row[c.column] for c in AnchorLabel) == len(dense.levels)
    assert row["positives_easy_pt"] + row["positives_hard_pt"] == row["positives"]
