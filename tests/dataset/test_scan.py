"""The scan equals torchvision's own parts image by image (transform, AnchorGenerator, box_iou, Matcher)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO

from explorer import synthetic
from explorer.anchors.grid import default_config
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import ScanConfig, format_summary, reference_image_stats, scan_dataset
from explorer.dataset.scan_numpy import geometry, union_cells
from explorer.dataset.scan_reference import TorchvisionReference


def _write(tmp_path: Path, coco: dict, name: str = "a.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(coco))
    return path


def _assert_matches_torchvision(path: Path, cfg: ScanConfig | None = None, limit: int | None = None) -> None:
    cfg = cfg or ScanConfig()
    ds = load_coco(path)
    result = scan_dataset(ds, cfg, device="cpu")
    a = cfg.anchors
    ref = TorchvisionReference(
        COCO(str(path)),
        sizes=a.sizes,
        aspect_ratios=a.aspect_ratios,
        strides=a.strides,
        min_size=a.min_size,
        max_size=a.max_size,
        pos_thresh=cfg.pos_thresh,
        neg_thresh=cfg.neg_thresh,
        low_quality=cfg.low_quality,
    )
    images, boxes = result.images, result.boxes
    level_cols = [c for c in images.columns if c.startswith("pos_P")]
    n = len(images) if limit is None else min(limit, len(images))
    for i in range(n):
        r = ref.image_stats(ds.image_ids[i].item())
        row = images.iloc[i]
        got = (row.positives, row.ignored, row.hard_negatives, row.easy_negatives, row.anchors)
        want = (r["positives"], r["ignored"], r["hard"], r["easy"], r["anchors"])
        assert got == want, f"image {ds.image_ids[i]}: scan {got} != torchvision {want}"
        assert (row.input_height, row.input_width) == tuple(r["input_hw"])
        np.testing.assert_array_equal(row[level_cols].to_numpy(dtype=np.int64), r["level_pos"])
        b = boxes[boxes.image_index == i]
        np.testing.assert_array_equal(b[["x1", "y1", "x2", "y2"]].to_numpy(), r["gt"])
        np.testing.assert_array_equal(b.num_positive.to_numpy(), r["box_pos"])
        np.testing.assert_array_equal(b.best_iou.to_numpy(), r["box_best"])
        np.testing.assert_array_equal(b.low_quality_only.to_numpy(), r["box_lq_only"])
        assert row.boxes_no_positive == int((r["box_pos"] == 0).sum())


def _image(image_id, width=640, height=480):
    return {"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height}


def _ann(ann_id, image_id, bbox, iscrowd=0, category_id=1):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(bbox),
        "iscrowd": iscrowd,
        "area": float(bbox[2] * bbox[3]),
    }


# --- exactness against torchvision ------------------------------------------------------------------------------


def test_synthetic_dataset_matches_torchvision(tmp_path):
    coco, _ = synthetic.make_dataset(12, seed=11)
    _assert_matches_torchvision(_write(tmp_path, coco))


@pytest.mark.parametrize("name", ["instances_val2017.json", "instances_train2017.json"])
def test_coco_mini_matches_torchvision(coco_mini, name):
    _assert_matches_torchvision(coco_mini / "annotations" / name)


def _edge_case_coco() -> dict:
    images = [
        _image(1),  # no boxes at all
        _image(2),  # only crowd boxes
        _image(3),  # tiny boxes, at borders and inside
        _image(4, 2000, 100),  # extreme aspect ratio: max_size caps the scale
        _image(5, 333, 500),  # portrait, upscaled
        _image(6),  # identical boxes (argmax ties), nested boxes, a box covering the image
        _image(7, 17, 23),  # a very small image
        _image(8),  # a box thinner than a thousandth of a pixel: reference path
    ]
    anns = [
        _ann(1, 2, (10, 10, 200, 100), iscrowd=1),
        _ann(2, 2, (300, 200, 50, 50), iscrowd=1),
        _ann(3, 3, (0, 0, 1, 1)),
        _ann(4, 3, (639, 479, 1, 1)),
        _ann(5, 3, (320.3, 240.7, 0.5, 2.25)),
        _ann(6, 3, (100, 100, 3, 3)),
        _ann(7, 3, (101, 100, 3, 3)),
        _ann(8, 4, (0, 0, 2000, 100)),
        _ann(9, 4, (1500, 20, 30, 60)),
        _ann(10, 5, (10.5, 20.25, 100, 300)),
        _ann(11, 5, (200, 400, 133, 100)),
        _ann(12, 6, (50, 60, 200, 150)),
        _ann(13, 6, (50, 60, 200, 150)),
        _ann(14, 6, (80, 90, 40, 30)),
        _ann(15, 6, (0, 0, 640, 480)),
        _ann(16, 6, (600, 10, 40, 460), iscrowd=1),
        _ann(17, 7, (2, 3, 10, 12)),
        _ann(18, 8, (100, 100, 1e-5, 40)),
        _ann(19, 8, (300, 200, 60, 60)),
    ]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}


def test_edge_cases_match_torchvision(tmp_path):
    coco = _edge_case_coco()
    path = _write(tmp_path, coco)
    _assert_matches_torchvision(path)
    result = scan_dataset(load_coco(path), device="cpu")
    im = result.images.set_index("image_id")
    assert im.loc[1, "positives"] == 0 and im.loc[1, "easy_negatives"] == im.loc[1, "anchors"]
    assert im.loc[2, "boxes"] == 0 and im.loc[2, "crowd_boxes"] == 2
    assert im.loc[2, "positives"] == 0 and im.loc[2, "hard_negatives"] == 0
    assert im.loc[6, "crowd_boxes"] == 1 and im.loc[6, "boxes"] == 4
    assert result.reference_images == 1  # image 8's 1e-5 px box goes through the reference path


@pytest.mark.parametrize(
    "cfg",
    [
        ScanConfig(pos_thresh=0.6, neg_thresh=0.3),
        ScanConfig(pos_thresh=0.5, neg_thresh=0.5),
        ScanConfig(low_quality=False),
        ScanConfig(anchors=default_config(min_size=512, max_size=853)),
        ScanConfig(anchors=default_config(sizes=((24, 36), (48, 72), (96, 144)), strides=(8, 16, 32))),
    ],
    ids=["pos0.6-neg0.3", "no-ignore-band", "no-low-quality", "512px", "3-levels"],
)
def test_configurations_match_torchvision(tmp_path, cfg):
    coco, _ = synthetic.make_dataset(3, seed=5)
    coco["images"] += _edge_case_coco()["images"]
    for k, a in enumerate(_edge_case_coco()["annotations"]):
        coco["annotations"].append({**a, "id": 10_000 + k, "image_id": a["image_id"]})
    for im in coco["images"][3:]:
        im["id"] += 1000
    for a in coco["annotations"][-19:]:
        a["image_id"] += 1000
    _assert_matches_torchvision(_write(tmp_path, coco), cfg)


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


def test_chunking_does_not_change_results():
    coco, _ = synthetic.make_dataset(9, seed=4)
    ds = load_coco(coco)
    a = scan_dataset(ds, device="cpu")
    b = scan_dataset(ds, device="cpu", chunk_images=2)
    assert a.images.equals(b.images)
    assert a.boxes.equals(b.boxes)


# --- union of rectangles -----------------------------------------------------------------------------------------


def _raster_union(x0, x1, y0, y1, w=40, h=40) -> int:
    grid = np.zeros((h, w), bool)
    for a, b, c, d in zip(x0, x1, y0, y1, strict=True):
        grid[max(c, 0) : max(d, 0), max(a, 0) : max(b, 0)] = True
    return int(grid.sum())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 10), st.integers(0, 30), st.integers(0, 10)),
        min_size=1,
        max_size=9,
    ),
    st.booleans(),
)
def test_union_cells_equals_rasterisation(rects, by_rows):
    rects = sorted(rects)  # sorted by x0, as union_cells requires
    x0 = np.array([r[0] for r in rects])
    x1 = x0 + np.array([r[1] for r in rects])
    y0 = np.array([r[2] for r in rects])
    y1 = y0 + np.array([r[3] for r in rects])
    got = union_cells(x0[None], x1[None], y0[None], y1[None], rows=40 if by_rows else None)
    assert got.tolist() == [_raster_union(x0, x1, y0, y1)]


def test_union_cells_empty_and_single():
    z = np.zeros((3, 0), np.int32)
    assert union_cells(z, z, z, z).tolist() == [0, 0, 0]
    one = np.array([[2]]), np.array([[5]]), np.array([[1]]), np.array([[3]])
    assert union_cells(*one).tolist() == [6]


# --- aggregates --------------------------------------------------------------------------------------------------


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


def test_progress_is_reported():
    coco, _ = synthetic.make_dataset(5, seed=1)
    calls = []
    scan_dataset(load_coco(coco), device="cpu", chunk_images=2, progress=lambda done, total: calls.append(done))
    assert calls == [2, 4, 5]


def test_bad_configuration():
    with pytest.raises(ValueError, match="neg_thresh"):
        ScanConfig(pos_thresh=0.3, neg_thresh=0.4)
    with pytest.raises(ValueError, match="neg_thresh"):
        ScanConfig(neg_thresh=0.0)
    with pytest.raises(ValueError, match="device"):
        scan_dataset(load_coco({"images": []}), device="tpu")


def test_torch_path_equals_numpy_path(tmp_path):
    # The CUDA path's code, run on the CPU: dense torchvision arithmetic, batched by input size and box count.
    coco, _ = synthetic.make_dataset(5, seed=9)
    edge = _edge_case_coco()
    coco["images"] += [{**im, "id": im["id"] + 1000} for im in edge["images"]]
    coco["annotations"] += [{**a, "id": a["id"] + 1000, "image_id": a["image_id"] + 1000} for a in edge["annotations"]]
    ds = load_coco(coco)
    for cfg in (ScanConfig(), ScanConfig(low_quality=False, neg_thresh=0.3)):
        a = scan_dataset(ds, cfg, device="cpu")
        b = scan_dataset(ds, cfg, device="torch-cpu")
        assert b.path == "torch-cpu"
        assert a.images.equals(b.images)
        assert a.boxes.equals(b.boxes)


def test_docstring_examples():
    import doctest

    from explorer.dataset import coco, scan
    from explorer.dataset import scan_numpy as scan_fast

    for module in (coco, scan, scan_fast):
        assert doctest.testmod(module).failed == 0, module.__name__


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


def test_auto_device_keeps_numpy_below_the_size_threshold_even_with_cuda(monkeypatch):
    import explorer.dataset.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: True)
    coco, _ = synthetic.make_dataset(6, seed=2)
    ds = load_coco(coco)
    assert ds.num_images < scan_mod.AUTO_CUDA_MIN_IMAGES
    assert scan_dataset(ds, device="auto").path == "numpy"


def test_auto_device_uses_cuda_at_or_above_the_size_threshold(monkeypatch):
    import explorer.dataset.scan as scan_mod
    import explorer.dataset.scan_torch as scan_torch_mod

    real = scan_torch_mod.scan_torch
    devices = []

    def fake_cuda_scan(*args, device, **kwargs):  # runs the CUDA path's code on the CPU
        devices.append(device)
        return real(*args, device="cpu", **kwargs)

    monkeypatch.setattr(scan_torch_mod, "scan_torch", fake_cuda_scan)
    coco, _ = synthetic.make_dataset(6, seed=2)
    ds = load_coco(coco)
    monkeypatch.setattr(scan_mod, "AUTO_CUDA_MIN_IMAGES", ds.num_images)
    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: False)
    assert scan_dataset(ds, device="auto").path == "numpy"  # no CUDA: numpy whatever the size
    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: True)
    big = scan_dataset(ds, device="auto")
    assert big.path.startswith("torch-cuda") and devices == ["cuda"]
    ref = scan_dataset(ds, device="cpu")
    assert big.images.equals(ref.images)


def test_an_image_too_elongated_for_the_input_size_is_named():
    coco = {
        "images": [_image(1), {"id": 2, "width": 100000, "height": 3, "file_name": "strip.jpg"}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [_ann(1, 1, [10, 10, 50, 50]), _ann(2, 2, [0, 0, 10, 3])],
    }
    with pytest.raises(ValueError, match=r"image id 2 \(strip.jpg\): a 100000x3 px image resizes to 1333x0 px"):
        scan_dataset(load_coco(coco), device="cpu")


# --- hostile sizes and devices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heights", "widths"),
    [
        ([], []),
        ([480, 481], [640 + 2**32, 640]),  # packed as h << 32 + w, both were 481x640
        ([2**31, 480], [7, 2**31]),
        ([480, 480, 600], [640, 640, 800]),
    ],
)
def test_geometry_groups_image_sizes_exactly(heights, widths):
    cfg = default_config(resize=False)  # the input size is the image size: nothing hides a wrong grouping
    geo = geometry(np.asarray(heights, np.int64), np.asarray(widths, np.int64), cfg)
    assert geo.input_h.tolist() == heights and geo.input_w.tolist() == widths
    for i, (h, w) in enumerate(zip(heights, widths, strict=True)):
        one = geometry(np.asarray([h]), np.asarray([w]), cfg)
        np.testing.assert_array_equal(geo.level_start[i], one.level_start[0])


def test_an_absurdly_large_image_is_a_problem_row_not_an_aborted_scan():
    coco = {
        "images": [_image(1), _image(2, width=10**9), _image(3, width=4_294_967_936)],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [_ann(1, 1, [10, 10, 50, 50]), _ann(2, 2, [0, 0, 10, 3]), _ann(3, 3, [0, 0, 10, 3])],
    }
    ds = load_coco(coco)
    result = scan_dataset(ds, device="cpu")
    assert result.images["image_id"].tolist() == [1] and result.images["input_width"].tolist() == [1066]
    assert ds.problems[ds.problems["kind"] == "image_size"]["image_id"].tolist() == [2, 3]


def test_cuda_without_a_gpu_is_a_value_error(monkeypatch):
    import explorer.dataset.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        scan_dataset(load_coco({"images": [_image(1)]}), device="cuda")
