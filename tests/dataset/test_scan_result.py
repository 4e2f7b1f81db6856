"""The scan result's tables and aggregates agree with each other; the CLI summary prints them."""

from __future__ import annotations

import numpy as np
import pytest

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_result import format_summary


def test_aggregates_are_consistent(tmp_path):
    coco, _ = synthetic.make_dataset(12, seed=8)
    ds = load_coco(coco)
    result = scan_dataset(ds, device="cpu")
    im = result.images
    labels = im[["positives", "ignored", "hard_negatives", "easy_negatives"]].sum(axis=1)
    assert (labels == im["anchors"]).all()
    assert (im[[c for c in im.columns if c.startswith("pos_P")]].sum(axis=1) == im["positives"]).all()
    assert (im[["small", "medium", "large"]].sum(axis=1) == im["boxes"]).all()
    lv = result.per_level()
    assert lv["anchors"].sum() == im["anchors"].sum()
    assert (lv[["positives", "ignored", "hard_negatives", "easy_negatives"]].sum(axis=1) == lv["anchors"]).all()
    pc = result.per_class()
    assert pc["instances"].sum() == im["boxes"].sum()
    assert pc["positives"].sum() == result.boxes["num_positive"].sum() == im["positives"].sum()
    assert set(pc["tag"]) <= {"", "under-represented", "over-represented", "absent"}
    # the synthetic long tail: the most frequent class is over-represented, the rarest under-represented
    assert pc.loc[pc["instances"].idxmax(), "tag"] == "over-represented"
    assert pc.loc[pc["instances"].idxmin(), "tag"] in ("under-represented", "absent")
    sz = result.per_size()
    assert sz["boxes"].sum() == len(result.boxes) and list(sz["size"]) == ["small", "medium", "large"]
    s = result.summary()
    assert s["images"] == 12 and s["boxes"] == len(result.boxes)
    shares = s["positive_share"] + s["ignored_share"] + s["hard_negative_share"] + s["easy_negative_share"]
    assert shares == pytest.approx(1.0)
    text = format_summary(result)
    assert "negatives per positive" in text and "P3" in text and "small" in text
    no_pos = result.boxes_without_positive()
    assert len(no_pos) == im["boxes_no_positive"].sum()


def test_empty_dataset():
    ds = load_coco({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    result = scan_dataset(ds, device="cpu")
    assert len(result.images) == 0 and len(result.boxes) == 0
    assert result.summary()["images"] == 0
    assert result.per_class()["tag"].tolist() == ["absent"]
    format_summary(result)


@pytest.mark.parametrize("slice_rows", [7, 1_000_000])
def test_box_table_streamed_to_parquet_equals_the_in_memory_one(tmp_path, monkeypatch, slice_rows):
    import pandas as pd

    import explorer.dataset.scan_tables as scan_tables

    monkeypatch.setattr(scan_tables, "BOX_SLICE_ROWS", slice_rows)
    coco, _ = synthetic.make_dataset(12, seed=8)
    tiny = [{**a, "id": 10_000 + k, "bbox": [*a["bbox"][:2], 3, 2]} for k, a in enumerate(coco["annotations"][::4])]
    coco["annotations"] += tiny  # boxes no anchor labels positive
    for a in coco["annotations"][1::5]:  # crowd regions: the matched boxes are not every annotation
        a["iscrowd"] = 1
    ds = load_coco(coco)
    kept = scan_dataset(ds, device="cpu")
    path = tmp_path / "boxes.parquet"
    streamed = scan_dataset(ds, device="cpu", boxes_to=path)
    assert streamed.boxes_path == str(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), kept.boxes, check_categorical=False)
    pd.testing.assert_frame_equal(streamed.images, kept.images)
    # only the boxes without a positive stay in memory, with their rows of the full table
    assert 0 < len(streamed.boxes) < len(kept.boxes)
    pd.testing.assert_frame_equal(streamed.boxes_without_positive(), kept.boxes_without_positive())
    # aggregates from the box columns: counts exact, means to the last bits
    a, b = streamed.per_class(), kept.per_class()
    pd.testing.assert_frame_equal(a.drop(columns="mean_best_iou"), b.drop(columns="mean_best_iou"), rtol=1e-12)
    assert a["mean_best_iou"].to_numpy() == pytest.approx(b["mean_best_iou"].to_numpy(), rel=1e-6, nan_ok=True)
    pd.testing.assert_frame_equal(streamed.per_size(), kept.per_size(), rtol=1e-6)


def test_images_per_category_counts_distinct_images_both_ways():
    from explorer.dataset import scan_result

    rng = np.random.default_rng(3)
    img = np.sort(rng.integers(0, 50, 400))
    ci = rng.integers(0, 7, 400)
    want = [len(set(img[ci == c].tolist())) for c in range(7)]
    assert scan_result._images_per_category(ci, img, 7).tolist() == want
    # 50 images x 7 M categories is too wide for a mark per (image, category): the sort path
    assert scan_result._images_per_category(ci, img, 7_000_000)[:7].tolist() == want
