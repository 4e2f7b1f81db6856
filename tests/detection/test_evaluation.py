"""Tests of explorer.detection.evaluation: detections matched to ground truth (TP, FP, missed)."""

from __future__ import annotations

import numpy as np
import torch

from explorer.detection import evaluation
from explorer.detection.evaluation import match_detections
from explorer.detection.outputs import Detections, filter_detections

CPU = torch.device("cpu")


def test_match_detections_tp_fp_missed(result, scene):
    m = match_detections(filter_detections(result.detections, score_thresh=0.3), scene.gt_boxes, scene.gt_labels)
    counts = m.counts()
    assert counts["true positives"] + counts["missed"] == len(scene.gt_boxes)
    assert counts["true positives"] >= len(scene.gt_boxes) - 1  # the demo model finds (nearly) every object
    empty = match_detections(Detections.empty(), scene.gt_boxes, scene.gt_labels)
    assert empty.missed.all()
    wrong_label = Detections(scene.gt_boxes[:1], np.ones(1, np.float32), scene.gt_labels[:1] % 8 + 1, np.zeros(1))
    assert not match_detections(wrong_label, scene.gt_boxes[:1], scene.gt_labels[:1]).is_tp.any()


def test_docstring_examples_evaluation():
    import doctest

    assert doctest.testmod(evaluation).failed == 0
