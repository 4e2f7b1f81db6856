"""Assigners side by side on the model's own anchors and outputs: the tables agree with the assignments and
max-IoU's focal loss is torchvision's compute_loss."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from explorer import synthetic
from explorer.anchors import compare
from explorer.detection.inference import run_inference
from explorer.detection.loading import load_demo_model
from explorer.labels import POSITIVE
from explorer.model_scan.image_stats import LossSettings, image_losses


@pytest.fixture(scope="module")
def case():
    demo = load_demo_model(torch.device("cpu"))
    image, anns = synthetic.make_scene(13)
    boxes, labels = synthetic.scene_targets(anns)
    dense = run_inference(demo, image).dense
    padded = tuple(-(-s // 32) * 32 for s in dense.input_size)
    inputs = compare.Inputs(
        anchors=dense.anchors.numpy(), levels=dense.levels.numpy(),
        strides=compare.level_strides(dense.grid_sizes, padded, dense.anchors_per_location),
        boxes=dense.to_input(boxes), labels=labels, logits=dense.cls_logits, decoded=dense.decoded_boxes().numpy(),
    )  # fmt: skip
    names = list(compare.ASSIGNERS)
    return dense, boxes, labels, inputs, compare.run_assigners(names, inputs)


def test_tables_agree_with_the_assignments(case):
    dense, _, labels, inputs, results = case
    gt = compare.per_gt_table(results, [str(c) for c in labels])
    levels = compare.per_level_table(results, inputs.levels, len(dense.grid_sizes))
    for name, a in results.items():
        col = compare.ASSIGNERS[name].name
        assert gt[col].tolist() == a.num_positive.tolist()
        assert int(levels[col].sum()) == int((a.label == POSITIVE).sum())
    counts = gt[[compare.ASSIGNERS[n].name for n in results]].to_numpy()
    assert gt["differs"].tolist() == (counts.min(axis=1) != counts.max(axis=1)).tolist()
    assert gt["differs"].any()  # five assigners on a busy scene do not all agree
    best = results["max_iou"].best_level
    assert gt["best level"].tolist() == [f"P{lv + 3}" for lv in best]
    pairs = compare.overlap_table(results)
    assert len(pairs) == 10
    first = pairs.iloc[0]
    a, b = results["max_iou"].label == POSITIVE, results["atss"].label == POSITIVE
    assert (first["both"], first["only the first"], first["only the second"]) == (
        (a & b).sum(),
        (a & ~b).sum(),
        (b & ~a).sum(),
    )


def test_max_iou_focal_is_torchvisions_and_soft_losses_where_defined(case):
    dense, boxes, labels, inputs, results = case
    table = compare.loss_table(results, inputs).set_index("assigner")
    exact = image_losses(dense, boxes, labels, LossSettings()).row["focal_loss"]
    assert table.loc["max-IoU", "focal"] == pytest.approx(exact, rel=1e-9)
    assert np.isnan(table.loc["max-IoU", "QFL"]) and np.isfinite(table.loc["TAL (mmdet)", "Varifocal"])
    maps = compare.soft_target_maps(results["tal_mmdet"], dense.grid_sizes, dense.anchors_per_location)
    pos = results["tal_mmdet"].label == POSITIVE
    assert max(m.max() for m in maps) == pytest.approx(float(results["tal_mmdet"].soft_target[pos].max()))


def test_prediction_aware_assigners_need_the_model(case):
    _, _, _, inputs, _ = case
    bare = compare.Inputs(inputs.anchors, inputs.levels, inputs.strides, inputs.boxes, inputs.labels)
    with pytest.raises(ValueError, match="needs the model"):
        compare.run_assigners(["simota"], bare)
    with pytest.raises(ValueError, match="unknown assigner"):
        compare.run_assigners(["yolo"], bare)
    assert set(compare.run_assigners(["max_iou", "atss"], bare)) == {"max_iou", "atss"}


def test_strides_follow_torchvisions_anchor_generator():
    s = compare.level_strides([(60, 80), (4, 5)], (480, 640), 9)
    assert s.shape == (60 * 80 * 9 + 20 * 9, 2) and s[0].tolist() == [8, 8] and s[-1].tolist() == [128, 120]


def test_docstring():
    assert doctest.testmod(compare).failed == 0
