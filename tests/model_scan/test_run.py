"""The model scan's driver, its on-disk parts (resume) and the CLI: rows per image, error rows, refusals, AP."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.image_stores import FolderImages, ZipImages
from explorer.detection.loading import load_demo_model
from explorer.model_scan import cli, summary
from explorer.model_scan.ap import coco_ap, coco_eval, per_class_ap
from explorer.model_scan.run import ModelScan, ModelScanConfig
from explorer.model_scan.store import ScanStore
from tests.helpers import zip_bytes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample() -> tuple[Path, Path]:
    path = synthetic.sample_dataset()
    return path, path.parent / "images"


@pytest.fixture(scope="module")
def demo():
    return load_demo_model(torch.device("cpu"))


def test_missing_and_corrupt_images_are_error_rows_and_the_scan_goes_on(demo):
    coco, arrays = synthetic.make_dataset(3, seed=4)
    ds = load_coco(coco)
    good = io.BytesIO()
    Image.fromarray(arrays[0]).save(good, format="PNG")
    store = ZipImages(zip_bytes({ds.file_names[0]: good.getvalue(), ds.file_names[1]: b"not an image"}))
    scan = ModelScan.run(ds, store, demo)
    errors = scan.images.set_index("file_name")["error"]
    assert errors[ds.file_names[0]] == "" and scan.images.loc[0, "positives"] > 0
    assert errors[ds.file_names[1]] != "" and "not among the images" in errors[ds.file_names[2]]
    assert scan.images["focal_loss"].notna().sum() == 1  # the unreadable images have no statistics


def test_categories_that_are_not_the_models_classes_are_refused_before_the_run(demo):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "person"}], "annotations": []}  # fmt: skip
    with pytest.raises(ValueError, match="not the model's classes"):
        ModelScan.run(load_coco(coco), FolderImages(ROOT), demo)


def test_ap_of_perfect_detections_is_one():
    coco, _ = synthetic.make_dataset(3, seed=2)
    ds = load_coco(coco)
    dets = pd.DataFrame(
        [{"image_id": a["image_id"], "category_id": a["category_id"], "x": a["bbox"][0], "y": a["bbox"][1],
          "w": a["bbox"][2], "h": a["bbox"][3], "score": 0.9} for a in coco["annotations"]]
    )  # fmt: skip
    assert coco_ap(ds, dets, [1, 2, 3]) == pytest.approx({"AP": 1.0, "AP50": 1.0})
    assert coco_ap(ds, dets.iloc[:0], [1, 2, 3]) == {"AP": 0.0, "AP50": 0.0}


def test_ap_per_class_is_cocoeval_s_own_per_category_average():
    from pycocotools.cocoeval import COCOeval

    coco, _ = synthetic.make_dataset(6, seed=2)
    ds = load_coco(coco)
    rows = []
    for k, a in enumerate(coco["annotations"]):
        x, y, w, h = a["bbox"]
        shift = 0.0 if a["category_id"] % 2 else w * 0.3  # even classes: boxes 30 % off, IoU about 0.54
        rows.append({"image_id": a["image_id"], "category_id": a["category_id"], "x": x + shift, "y": y, "w": w,
                     "h": h, "score": 0.5 + 0.4 * ((k * 7) % 10) / 10})  # fmt: skip
    dets = pd.DataFrame(rows)
    table = per_class_ap(ds, dets, ds.image_ids.tolist()).set_index("category_id")
    present = set(ds.ann_category.tolist())
    odd = [c for c in present if c % 2]
    even = [c for c in present if not c % 2]
    assert odd and even
    assert (table.loc[odd, "AP"] == 1.0).all() and (table.loc[even, "AP"] < 0.5).all()
    assert (table.loc[even, "AP50"] == 1.0).all()
    absent = [c for c in ds.category_ids.tolist() if c not in present]
    assert table.loc[absent, "AP"].isna().all()
    # one class alone: its AP is COCOeval's stats[0] over that class
    ev = coco_eval(ds, dets, ds.image_ids.tolist())
    assert isinstance(ev, COCOeval)
    one = even[0]
    ev.params.catIds = [one]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert table.loc[one, "AP"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert table.loc[one, "AP50"] == pytest.approx(ev.stats[1], abs=1e-12)


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Exit status and stderr of ``python -m explorer model-scan ARGS``, in-process (the module entry point itself
    is tested in tests/test_cli.py)."""
    from explorer.__main__ import main

    code = main(["model-scan", *args])
    return code, capsys.readouterr().err


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_cli_resumes_where_a_stopped_run_was(sample, demo, tmp_path, monkeypatch, capsys):
    path, images = sample
    out = tmp_path / "stats.parquet"
    argv = ["model-scan", str(path), "--images", str(images), "--model", "demo", "--out", str(out), "--quiet"]
    monkeypatch.setattr(cli, "CHUNK", 2)
    calls = {"n": 0}
    real = cli._store

    class Stop(Exception):
        pass

    def failing_store(p):
        store = real(p)
        read = store.read

        def read_then_stop(name):
            calls["n"] += 1
            if calls["n"] == 4:
                raise Stop  # a crash in the middle of the run: chunk 1 (2 images) and image 3 are written
            return read(name)

        store.read = read_then_stop
        return store

    from explorer.__main__ import main

    monkeypatch.setattr(cli, "_store", failing_store)
    with pytest.raises(Stop):
        main([*argv, "--limit", "5"])
    assert len(ScanStore(out).done_ids()) == 3
    monkeypatch.setattr(cli, "_store", real)
    assert main([*argv, "--limit", "5"]) == 0
    resumed = pd.read_parquet(out)
    assert len(resumed) == 5 and resumed["image_id"].is_unique
    assert "COCO AP" in capsys.readouterr().out
    fresh = tmp_path / "fresh.parquet"
    assert main([*argv[:-2], str(fresh), "--quiet", "--limit", "5"]) == 0
    a = resumed.sort_values("image_id").reset_index(drop=True)
    b = pd.read_parquet(fresh).sort_values("image_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    for kind in ("problems", "detections"):
        assert ScanStore(out).sidecar(kind).exists()
    bins = np.load(ScanStore(out).sidecar("bins"))
    np.testing.assert_allclose(bins["s0"], np.load(ScanStore(fresh).sidecar("bins"))["s0"], rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "--model must be demo"),
        (["--model", "demo", "--out", "x.csv"], "must end in .parquet"),
        (["--model", "demo", "--images", "README.md"], "--images must be a folder or a .zip"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(sample, tmp_path, capsys, args, message):
    path, images = sample
    base = {"--images": str(images), "--out": str(tmp_path / "s.parquet")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    code, err = _cli(capsys, str(path), *flat, "--quiet", "--limit", "1")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_cli_refuses_categories_before_running(tmp_path, capsys):
    ann = tmp_path / "coco.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
                               "categories": [{"id": 1, "name": "person"}], "annotations": []}))  # fmt: skip
    code, err = _cli(
        capsys, str(ann), "--images", str(tmp_path), "--model", "demo", "--out", str(tmp_path / "s.parquet")
    )
    assert code == 2 and "not the model's classes" in err


def test_assigners_compared_on_every_image_agree_with_the_loss_labels(sample, demo):
    path, images = sample
    ds = load_coco(path)
    names = ("max_iou", "atss", "tal_mmdet", "simota")
    scan = ModelScan.run(ds, FolderImages(images), demo, ModelScanConfig(limit=2, assigners=names))
    rows = scan.images
    assert (rows["max_iou_positives"] == rows["positives"]).all()  # max-IoU is the loss's own labelling
    assert (rows[[f"{n}_no_positive" for n in names]].to_numpy() <= rows[["boxes"]].to_numpy()).all()
    table = summary.assigner_table(rows).set_index("assigner")
    assert list(table.index) == ["max-IoU", "ATSS", "TAL (mmdet)", "SimOTA"]
    assert table.loc["ATSS", "positive anchors"] == rows["atss_positives"].sum()
    assert summary.assigner_table(ModelScan.run(ds, FolderImages(images), demo, ModelScanConfig(limit=1)).images).empty
    with pytest.raises(ValueError, match="unknown assigner"):
        ModelScanConfig(assigners=("yolo",))
