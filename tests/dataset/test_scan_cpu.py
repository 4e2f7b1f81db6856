"""The fast exact path equals the dense-equivalent labeling (reference_image_stats), GT by GT: random boxes
on small inputs, float anchor conventions (mmdet, detectron2).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer import synthetic
from explorer.anchors.grid import default_config
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_reference import reference_image_stats


@pytest.mark.parametrize("convention", ["mmdet", "detectron2"])
def test_float_anchor_conventions_match_the_dense_reference(convention):
    # mmdet / detectron2 anchors are not integers: the float32 coordinate path is used.
    coco, _ = synthetic.make_dataset(5, seed=2)
    coco["images"][1]["width"] = 500
    cfg = ScanConfig(anchors=default_config(convention))
    ds = load_coco(coco)
    result = scan_dataset(ds, cfg, device="cpu")
    for i in range(ds.num_images):
        b = result.boxes[result.boxes.image_index == i]
        row = result.images.iloc[i]
        r = reference_image_stats(
            b[["x1", "y1", "x2", "y2"]].to_numpy(np.float32), (int(row.input_height), int(row.input_width)), cfg
        )
        assert (row.positives, row.ignored, row.hard_negatives, row.easy_negatives) == (
            r["positives"],
            r["ignored"],
            r["hard"],
            r["easy"],
        )
        np.testing.assert_array_equal(b.num_positive.to_numpy(), r["box_pos"])


_box = st.tuples(
    st.floats(0, 300, allow_nan=False), st.floats(0, 300, allow_nan=False), st.floats(0.01, 300), st.floats(0.01, 300)
)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(20, 320),
    st.integers(20, 320),
    st.lists(_box, min_size=0, max_size=12),
    st.sampled_from([(0.5, 0.4), (0.6, 0.3), (0.45, 0.45)]),
    st.booleans(),
    st.booleans(),
)
def test_random_images_match_the_dense_reference(height, width, raw, thresholds, low_quality, duplicate):
    # Random boxes (tiny, huge, clipped, duplicated for argmax ties) on small inputs (min_size 256): the fast path
    # equals the dense-equivalent labeling of explorer.anchors.max_iou, GT by GT.
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": list(b), "iscrowd": 0} for k, b in enumerate(raw)]
    if duplicate and anns:
        anns.append({**anns[0], "id": 99})
    coco = {"images": [{"id": 1, "width": width, "height": height}], "annotations": anns, "categories": [{"id": 1}]}
    cfg = ScanConfig(
        anchors=default_config(min_size=256, max_size=427),
        pos_thresh=thresholds[0],
        neg_thresh=thresholds[1],
        low_quality=low_quality,
    )
    result = scan_dataset(load_coco(coco), cfg, device="cpu")
    row = result.images.iloc[0]
    b = result.boxes
    r = reference_image_stats(
        b[["x1", "y1", "x2", "y2"]].to_numpy(np.float32), (int(row.input_height), int(row.input_width)), cfg
    )
    got = (row.positives, row.ignored, row.hard_negatives, row.easy_negatives)
    assert got == (r["positives"], r["ignored"], r["hard"], r["easy"])
    np.testing.assert_array_equal(b.num_positive.to_numpy(), r["box_pos"])
    np.testing.assert_array_equal(b.best_iou.to_numpy(), r["box_best"])
    np.testing.assert_array_equal(b.low_quality_only.to_numpy(), r["box_lq_only"])
