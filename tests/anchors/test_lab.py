"""Tests for explorer.anchors.lab and explorer.figures.anchors on a sample scene."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from explorer.anchors import lab
from explorer.anchors.grid import AnchorConfig
from explorer.anchors.stats import threshold_sweep
from explorer.dataset.image_boxes import boxes_from_scene
from explorer.figures import anchors as figs
from explorer.synthetic import CLASS_NAMES, make_scene


@pytest.fixture(scope="module")
def setup():
    img, anns = make_scene(7)
    gts = boxes_from_scene(anns, img.shape[1], img.shape[0], CLASS_NAMES)
    scene = lab.prepare_scene(*img.shape[:2], AnchorConfig())
    boxes = scene.to_input(gts.boxes)
    sp = lab.compute_sparse(scene, boxes)
    canvas = np.zeros((*scene.padded_hw, 3), np.uint8)
    return scene, gts, boxes, sp, canvas


def test_scene_and_tables(setup) -> None:
    scene, gts, boxes, sp, _ = setup
    assert scene.resized_hw == (800, 1066) and len(scene.anchors) == 163_206
    res = lab.label_anchors(scene, boxes, sp)
    s = lab.summary(res, 0.5)
    assert s["positive"] + s["ignored"] + s["hard negative"] + s["easy negative"] == 163_206
    assert s["best possible recall"] == pytest.approx((res.best_iou >= 0.5).mean())
    lvl = lab.per_level_table(scene, res)
    assert lvl["level"].tolist() == ["P3", "P4", "P5", "P6", "P7", "all"]
    assert lvl["anchors"].iloc[-1] == 163_206 and lvl["positive"].iloc[-1] == s["positive"]
    gt = lab.per_gt_table(scene, boxes, gts.classes, res)
    assert len(gt) == len(gts) and gt["positives"].sum() == s["positive"]
    assert set(gt["status"]) <= {"ok", "no positive", "low-quality only"}
    x, y = lab.default_location(scene, boxes)
    loc = lab.location_table(scene, x, y, boxes, res)
    assert len(loc) == 45 and loc["level"].tolist()[::9] == ["P3", "P4", "P5", "P6", "P7"]
    assert loc["shape"].tolist()[:9] == list(range(9))
    np.testing.assert_allclose(lab.box_sizes(np.array([[0, 0, 4, 9]])), [6.0])


def test_atss_and_bad_assigner(setup) -> None:
    scene, _, boxes, sp, _ = setup
    res = lab.label_anchors(scene, boxes, sp, assigner="atss")
    assert res.method == "atss" and (res.num_positive > 0).any()
    assert not np.isnan(res.threshold).any()
    with pytest.raises(ValueError, match="assigner"):
        lab.label_anchors(scene, boxes, sp, assigner="yolo")


def test_images(setup) -> None:
    scene, gts, boxes, sp, canvas = setup
    res = lab.label_anchors(scene, boxes, sp)
    for out in (
        lab.gt_image(canvas, boxes, gts.classes, res),
        lab.positives_image(canvas, scene, boxes, res, show_ignored=True),
        lab.positives_image(canvas, scene, boxes, res, levels=[0], color_by="level"),
        lab.hard_negative_image(canvas, scene, boxes, res),
        lab.ignored_image(canvas, scene, boxes, res, levels=[0, 1]),
        lab.gt_focus_image(canvas, scene, boxes, res, 0),
        lab.location_image(canvas, scene, 100, 100, boxes),
    ):
        assert out.shape == canvas.shape and out.dtype == np.uint8 and out.any()
    assert not canvas.any()  # inputs untouched
    with pytest.raises(ValueError, match="gt must be"):
        lab.gt_focus_image(canvas, scene, boxes, res, len(boxes))


def test_figures(setup) -> None:
    scene, _, boxes, sp, _ = setup
    res = lab.label_anchors(scene, boxes, sp)
    lvl = lab.per_level_table(scene, res)
    counts = {k: lvl[k].to_numpy()[:-1] for k in ("positive", "ignored", "hard negative", "easy negative")}
    fig = figs.level_label_bar(counts, scene.level_names)
    assert isinstance(fig, go.Figure) and len(fig.data) == 4 and fig.layout.barmode == "stack"
    assert list(fig.data[0].y) == counts["positive"].tolist()
    # Regression: stacked bars on a log axis misstate every segment but the lowest: grouped there.
    fig = figs.level_label_bar(counts, scene.level_names, log_y=True)
    assert fig.layout.barmode == "group" and fig.layout.yaxis.type == "log"
    fig = figs.level_label_bar(counts, scene.level_names, normalize=True, log_y=True)
    assert fig.layout.barmode == "stack" and fig.layout.barnorm == "percent" and fig.layout.yaxis.type != "log"
    sw = threshold_sweep(sp)
    assert len(sw["pos_thresh"]) == 9
    f2 = figs.threshold_sweep_figure(sw, current=0.5)
    assert len(f2.data) == 4
    assert len(lab.sweep_table(sw)) == 9
    f3 = figs.positives_per_gt_figure(lab.box_sizes(boxes), res.num_positive, res.best_level, scene.level_names)
    assert sum(len(t.x) for t in f3.data) == len(boxes)
    assert 32 in f3.layout.xaxis.tickvals and 64 in f3.layout.xaxis.tickvals  # anchor-size ticks on the log axis
    f4 = figs.iou_hist_figure(res.max_iou, pos_thresh=0.5, neg_thresh=0.4)
    assert sum(f4.data[0].y) == int((res.max_iou > 0).sum())
    assert len(f4.layout.shapes) == 2
    # ATSS has no fixed IoU threshold: no threshold lines (they showed the disabled max-IoU sliders' values).
    assert len(figs.iou_hist_figure(res.max_iou, pos_thresh=None, neg_thresh=None).layout.shapes) == 0
