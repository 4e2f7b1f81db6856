"""Tests of explorer.detection.outputs: the dense outputs of the demo model, torchvision's own postprocess of them,
the candidates before NMS, filtering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from explorer.detection.demo_model import DEMO_NUM_CLASSES
from explorer.detection.inference import image_to_tensor, run_inference
from explorer.detection.outputs import Detections, filter_detections

CPU = torch.device("cpu")


def test_dense_outputs_shapes(result, demo):
    dense = result.dense
    n = sum(gh * gw * 9 for gh, gw in dense.grid_sizes)
    assert dense.cls_logits.shape == (n, DEMO_NUM_CLASSES) and dense.cls_logits.dtype == torch.float32
    assert dense.bbox_deltas.shape == (n, 4) and dense.anchors.shape == (n, 4)
    assert dense.levels.tolist() == sorted(dense.levels.tolist())
    assert np.bincount(dense.levels.numpy()).tolist() == dense.level_counts
    assert dense.grid_sizes == [(60, 80), (30, 40), (15, 20), (8, 10), (4, 5)]
    assert dense.input_size == (480, 640) and dense.image_size == (480, 640)
    maps = dense.max_prob_maps()
    assert [m.shape for m in maps] == dense.grid_sizes
    assert max(float(m.max()) for m in maps) == pytest.approx(float(result.candidates.scores.max()), abs=1e-6)
    assert set(result.timings_ms) == {"preprocess", "backbone+FPN", "head", "postprocess", "total"}
    assert result.device.startswith("CPU")


def test_torchvision_postprocess_of_dense_outputs_gives_the_models_detections(demo, small_image):
    result = run_inference(demo, small_image)
    dense = result.dense
    head, anchors = dense.split_per_level()
    model = demo.model
    with torch.inference_mode():
        dets = model.postprocess_detections(head, anchors, [dense.input_size])
        dets = model.transform.postprocess(dets, [dense.input_size], [dense.image_size])[0]
        own = model([image_to_tensor(small_image)])[0]
    assert len(own["boxes"]) == len(result.detections) > 0
    for ref in (dets, own):
        np.testing.assert_allclose(result.detections.boxes, ref["boxes"].numpy(), atol=1e-4)
        np.testing.assert_array_equal(result.detections.labels, ref["labels"].numpy())
        np.testing.assert_allclose(result.detections.scores, ref["scores"].numpy(), atol=1e-6)


def test_candidates_are_torchvisions_pre_nms_set(result):
    cand = result.candidates
    assert (cand.scores > 0.05).all()
    assert (np.bincount(cand.levels, minlength=5) <= 1000).all()
    assert len(result.detections) <= len(cand)
    # every final detection is one of the candidates
    iou = box_iou(torch.from_numpy(result.detections.boxes), torch.from_numpy(cand.boxes)).numpy()
    assert (iou.max(axis=1) > 0.9999).all()


def test_filter_detections(result):
    dets = result.candidates
    out = filter_detections(dets, score_thresh=0.3, classes={1, 2}, max_detections=3)
    assert len(out) <= 3 and set(out.labels.tolist()) <= {1, 2} and (out.scores >= 0.3).all()
    assert list(out.scores) == sorted(out.scores, reverse=True)
    assert len(filter_detections(Detections.empty(), score_thresh=0.5)) == 0
