"""Dataset diagnostics: the page in AppTest (sample default, configuration, server data root, bad input) and its
helpers (image stores, path guards, anchor view, crops, figures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer import synthetic
from explorer.dataset import view as dataset_view
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.view import box_crop, labeled_anchor_image
from explorer.figures import dataset as figs
from ui import sources

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "3_Dataset_diagnostics.py")


@pytest.fixture(scope="module", autouse=True)
def _sample_ready():
    synthetic.sample_dataset()


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_defaults_to_the_sample_dataset(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(sources.DATA_ROOT_ENV, raising=False)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    m = _metrics(at)
    assert m["Images"] == "200"
    assert int(m["Anchors"].replace(",", "")) > 0
    # the source radio offers no server folder without the operator's data root
    assert "Server data folder" not in at.radio(key="dd_source").options
    assert any("Read as **COCO** · 200 images" in c.value for c in at.caption)
    # a stricter positive threshold gives fewer positives; downloads build without error
    before = m["Positive"]
    at.sidebar.number_input(key="dd_pos").set_value(0.7).run()
    assert not at.exception
    assert _metrics(at)["Positive"] != before
    at.toggle(key="dd_exports").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]


def _write_images(folder: Path, coco: dict, arrays: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for info, arr in zip(coco["images"], arrays, strict=True):
        Image.fromarray(arr).save(folder / info["file_name"])


def test_server_data_root_lists_files_and_reports_bad_json(tmp_path, monkeypatch):
    coco, arrays = synthetic.make_dataset(3, seed=4)
    (tmp_path / "set" / "annotations").mkdir(parents=True)
    (tmp_path / "set" / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    _write_images(tmp_path / "set" / "val", coco, arrays)
    (tmp_path / "broken.json").write_text('{"images": [{"id": 1}, ')
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(sources.DATA_ROOT_ENV, str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="dd_source").set_value("Server data folder").run()
    assert not at.exception, [e.value for e in at.exception]
    files = at.selectbox(key="dd_server_json").options
    assert files == ["broken.json", "set/annotations/instances_val.json"]
    at.selectbox(key="dd_server_json").set_value("set/annotations/instances_val.json").run()
    assert not at.exception
    assert _metrics(at)["Images"] == "3"
    assert (
        at.selectbox(key="dd_server_images:set/annotations/instances_val.json").value == "set/val"
    )  # guessed from the annotation file name
    at.selectbox(key="dd_server_json").set_value("broken.json").run()
    assert not at.exception
    assert any("invalid JSON at line 1" in e.value for e in at.error)


def test_anchor_view_agrees_with_the_scan():
    coco, arrays = synthetic.make_dataset(2, seed=6)
    ds = load_coco(coco)
    cfg = ScanConfig()
    result = scan_dataset(ds, cfg, device="cpu")
    for i in range(2):
        b = result.boxes[result.boxes.image_index == i]
        boxes = b[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
        picture, summary = labeled_anchor_image(arrays[i], boxes, cfg, classes=["x"] * len(boxes))
        row = result.images.iloc[i]
        assert picture.shape == (row.input_height, row.input_width, 3)
        assert summary["positive"] == row.positives
        assert summary["ignored"] == row.ignored


def test_box_crop():
    img = np.zeros((100, 120, 3), np.uint8)
    crop = box_crop(img, (10, 20, 14, 23))
    assert min(crop.shape[:2]) >= 48 and crop.dtype == np.uint8
    with pytest.raises(ValueError, match="outside"):
        box_crop(img, (500, 500, 510, 510))


def _total(fig: go.Figure) -> float:
    """The sum of a figure's bars (scatter overlays left out)."""
    return float(sum(np.sum(t.y) for t in fig.data if t.type in ("bar", "histogram")))


@pytest.mark.parametrize("empty", [False, True])
def test_figures_show_the_scan_counts(empty):
    """Each chart holds the scan's numbers: histograms count every image or box once, bars are the table's."""
    coco, _ = synthetic.make_dataset(6, seed=2)
    ds = load_coco({"images": [], "categories": [{"id": 1, "name": "a"}]} if empty else coco)
    r = scan_dataset(ds, device="cpu")
    n_images, n_boxes = len(r.images), len(r.boxes)
    assert _total(figs.positives_per_image(r.images)) == n_images
    assert _total(figs.boxes_per_image(r.images)) == n_images
    with_negatives = int((r.images["positives"] > 0).sum())
    assert _total(figs.pos_neg_ratio(r.images)) == with_negatives
    sizes = figs.box_sizes(r.boxes)
    assert {t.name.split(" ")[0] for t in sizes.data} == {"small", "medium", "large"}
    # the range ends at the 99.5th percentile: at most the largest 0.5 % (at least one box) fall outside it
    assert n_boxes - max(1, int(np.ceil(0.005 * n_boxes))) <= _total(sizes) <= n_boxes
    assert _total(figs.aspect_ratios(r.boxes)) == n_boxes
    per_class = r.per_class()
    assert _total(figs.class_counts(per_class)) == per_class["instances"].sum()
    levels = r.per_level()
    assert list(figs.positives_per_level(levels).data[0].y) == levels["positives"].tolist()
    assert float(figs.centre_heatmap(r.boxes).data[0].z.sum()) == n_boxes
    assert len(figs.level_labels(levels).data) > 0 and figs.no_positive_by_size(r.per_size()).data
    assert _total(figs.problems_by_kind(ds.problem_summary())) == ds.problem_summary()["count"].sum()


def test_an_upload_kept_for_the_session_can_be_cleared(monkeypatch):
    monkeypatch.chdir(ROOT)
    coco = json.loads(synthetic.sample_dataset().read_text())
    small = {**coco, "images": coco["images"][:3], "annotations": []}
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="dd_source").set_value("Upload a COCO JSON").run()
    at.file_uploader(key="dd_json").set_value(("three.json", json.dumps(small).encode(), "application/json")).run()
    assert _metrics(at)["Images"] == "3"
    at.file_uploader(key="dd_json").set_value(None).run()  # the uploader emptied (as after a page change)
    assert _metrics(at)["Images"] == "3" and any("uploaded earlier" in c.value for c in at.caption)
    at.button(key="dd_json_clear").click().run()
    assert not at.exception and not at.metric
    assert any("Upload a COCO instances JSON" in i.value for i in at.info)


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_gallery_says_how_many_boxes_it_shows_and_writes_ious_below_the_threshold(monkeypatch):
    """Low-quality matches off: the sample has more boxes without a positive than the gallery's 24 crops."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(sources.DATA_ROOT_ENV, raising=False)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.sidebar.toggle(key="dd_lq").set_value(False).run()
    assert not at.exception, [e.value for e in at.exception]
    ds = load_coco(synthetic.sample_dataset())
    result = scan_dataset(ds, ScanConfig(low_quality=False))
    total = len(result.boxes_without_positive())
    assert total > dataset_view.GALLERY_SIZE
    captions = [c.value for c in at.caption]
    assert (
        f"Crops of the {dataset_view.GALLERY_SIZE} smallest of {total:,}, with the best IoU any anchor reaches"
        in " ".join(captions)
    )
    rows = dataset_view.no_positive_rows(ds, result, 0.5)
    ious = [float(caption.rsplit("best IoU ", 1)[1]) for _, _, caption in rows]
    assert len(rows) == dataset_view.GALLERY_SIZE and all(v < 0.5 for v in ious)


@pytest.mark.slow
def test_a_dataset_with_too_many_boxes_to_hold_streams_its_box_table(monkeypatch, tmp_path):
    import ui.dataset

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(sources.DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr(ui.dataset, "STREAM_BOXES_MIN", 10)  # the sample's boxes count as "too many"
    monkeypatch.setattr(ui.dataset, "cache_root", lambda: tmp_path)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.sidebar.number_input(key="dd_pos").set_value(0.45).run()  # a configuration no other test has cached
    assert not at.exception, [e.value for e in at.exception]
    assert _metrics(at)["Images"] == "200"
    assert any("written to a Parquet file on the server" in c.value for c in at.caption)
    assert len(list((tmp_path / "scans").glob("boxes-*.parquet"))) == 1
    at.toggle(key="dd_exports").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
