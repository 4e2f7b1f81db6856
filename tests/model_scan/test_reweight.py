"""Focal loss at any (alpha, gamma) from the binned statistics: within the stated bound of the exact sums, and the
bound below 1e-3 relative."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from explorer import synthetic
from explorer.detection.inference import run_inference
from explorer.detection.loading import load_demo_model
from explorer.model_scan import reweight
from explorer.model_scan.image_stats import COUNTED, LossSettings, image_losses
from explorer.model_scan.reweight import LossBins


@pytest.fixture(scope="module")
def scenes():
    demo = load_demo_model(torch.device("cpu"))
    out = []
    for seed in (3, 8, 21):
        image, anns = synthetic.make_scene(seed)
        boxes, labels = synthetic.scene_targets(anns)
        out.append((run_inference(demo, image).dense, boxes, labels))
    return out


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.5, 1.3), (-1, 0.0), (0.1, 4.7), (0.9, 3.0)])
def test_binned_focal_is_within_its_bound_of_the_exact_sum(scenes, alpha, gamma):
    bins = LossBins.zeros()
    exact = np.zeros(len(COUNTED))
    for dense, boxes, labels in scenes:
        first = image_losses(dense, boxes, labels)  # the bins do not depend on the run's alpha and gamma
        bins += first.bins
        row = image_losses(dense, boxes, labels, LossSettings(alpha=alpha, gamma=gamma)).row
        exact += [row[f"{g.column}_focal"] / row["normalizer"] for g in COUNTED]
    est, bound = bins.focal(alpha=alpha, gamma=gamma)
    assert (est <= exact * (1 + 1e-12)).all() and (exact <= (est + bound) * (1 + 1e-12)).all()
    assert (bound <= 1e-3 * exact).all() and (np.abs(est - exact) <= 1e-3 * exact).all()


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="alpha must be"):
        LossBins.zeros().focal(alpha=1.5, gamma=2)


def test_docstring_example():
    assert doctest.testmod(reweight).failed == 0
