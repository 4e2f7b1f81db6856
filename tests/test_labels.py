"""explorer.labels: one vocabulary for anchor labels, used by every module, figure and page."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer import labels
from explorer.anchors import lab
from explorer.anchors.grid import AnchorConfig
from explorer.anchors.max_iou import assign_max_iou
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.figures import anchors as anchor_figs
from explorer.figures import dataset as dataset_figs
from explorer.figures import detection as detection_figs
from explorer.figures import loss_budget as loss_figs
from explorer.labels import AnchorLabel
from explorer.losses import budget


def test_codes_names_and_columns():
    assert [int(x) for x in AnchorLabel] == [0, 1, 2, 3]
    assert [x.display for x in labels.DISPLAY_ORDER] == ["positive", "ignored", "hard negative", "easy negative"]
    assert AnchorLabel.from_display("ignored") is labels.IGNORED
    with pytest.raises(ValueError, match="unknown anchor label 'hard'"):
        AnchorLabel.from_display("hard")
    assert (labels.BELOW_LOW_THRESHOLD, labels.BETWEEN_THRESHOLDS) == (-1, -2)  # torchvision's Matcher


def test_every_figure_and_the_image_overlay_use_one_palette():
    for name, colour in anchor_figs.LABEL_CSS.items():
        assert colour == labels.COLORS[name]
        assert labels.rgb(colour) == labels.LABEL_RGB[AnchorLabel.from_display(name)]
    for table in (detection_figs.GROUP_COLORS, loss_figs.GROUP_COLORS):
        assert all(table[name] == labels.COLORS[name] for name in table)
    assert {x.column: labels.COLORS[x.display] for x in labels.DISPLAY_ORDER} == dataset_figs.LABEL_CSS


def test_the_loss_lab_batch_speaks_the_same_codes():
    batch = budget.simulate_batch(budget.BatchSpec(n_anchors=1_000))
    assert set(np.unique(batch.group).tolist()) <= {int(x) for x in budget.GROUP_LABELS}
    assert budget.GROUPS == ("positive", "hard negative", "easy negative")
    assert (batch.target == (batch.group == labels.POSITIVE)).all()


def test_scan_columns_are_the_label_columns():
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}], "categories": [], "annotations": []}
    result = scan_dataset(load_coco(coco), ScanConfig(), device="cpu")
    assert {x.column for x in AnchorLabel} <= set(result.images.columns)


def test_negatives_per_positive_without_a_positive_is_the_same_everywhere():
    """Was a count in the Anchor lab and inf in the scan."""
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}], "categories": [], "annotations": []}
    scan = scan_dataset(load_coco(coco), ScanConfig(), device="cpu").summary()
    scene = lab.prepare_scene(48, 64, AnchorConfig())
    anchor_lab = lab.summary(assign_max_iou(scene.anchors, np.zeros((0, 4), np.float32)), 0.5)
    assert math.isinf(scan["neg_per_pos"]) and math.isinf(anchor_lab["negatives per positive"])
    assert labels.ratio_text(scan["neg_per_pos"]) == "∞ (no positive)"
