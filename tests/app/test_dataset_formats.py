"""Dataset diagnostics with datasets as users have them (AppTest): a YOLO or VOC dataset uploaded as a zip (format
found or chosen, split choice, images served from the zip), a zip holding several datasets, and YOLO / VOC datasets
under the server's data root (listed, read, and refused when a data.yaml points outside the root)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import synthetic
from explorer.dataset.convert import write_voc, write_yolo
from tests.dataset.format_cases import synthetic_images, text, zip_folder
from ui import sources
from ui.common import digest

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "3_Dataset_diagnostics.py")


@pytest.fixture(scope="module", autouse=True)
def _sample_ready():
    synthetic.sample_dataset()


def _yolo_folder(tmp: Path) -> Path:
    """A YOLO dataset with a 2-image train split and a 3-image val split (the images are links into tmp/src)."""
    folder = tmp / "yolo"
    for split, n in (("train", 2), ("val", 3)):
        ds = synthetic_images(tmp / "src" / split, n, seed=n)
        write_yolo(ds, tmp / split, split=split)
        for sub in ("images", "labels"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (tmp / split / sub / split).rename(folder / sub / split)
        shutil.rmtree(tmp / split)  # the converter's data.yaml
    names = json.dumps(dict(enumerate(ds.category_names)))
    text(folder / "data.yaml", f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return folder


def _voc_folder(tmp: Path) -> Path:
    ds = synthetic_images(tmp / "src-voc", 2, seed=5)
    ds.iscrowd = ds.iscrowd.copy()
    ds.iscrowd[:2] = True  # two difficult objects
    write_voc(ds, tmp / "VOC2007", split="val")
    return tmp / "VOC2007"


def _page(monkeypatch, root: Path | None = None) -> AppTest:
    monkeypatch.chdir(ROOT)
    if root is None:
        monkeypatch.delenv(sources.DATA_ROOT_ENV, raising=False)
    else:
        monkeypatch.setenv(sources.DATA_ROOT_ENV, str(root))
    return AppTest.from_file(PAGE, default_timeout=60).run()


def _ok(at: AppTest) -> dict[str, str]:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return {m.label: m.value for m in at.metric}


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def _upload_zip(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="dd_source").set_value("Upload a dataset zip").run()
    return at.file_uploader(key="dd_dataset_zip").set_value((name, data, "application/zip")).run()


def test_a_yolo_zip_is_found_read_by_split_and_its_images_are_served(tmp_path, monkeypatch):
    data = zip_folder(_yolo_folder(tmp_path), under="my-set")
    at = _upload_zip(_page(monkeypatch), "my-set.zip", data)
    m = _ok(at)
    assert m["Images"] == "3"  # the val split by default
    assert "Read as **YOLO** · split **val** · 3 images" in _captions(at)
    assert at.subheader[0].value == "my-set.zip/my-set/data.yaml (val)"
    assert not at.warning, [w.value for w in at.warning]  # every file name is found in the zip's images
    split = at.selectbox(key=f"dd_zip_split:{digest(data)}:auto")
    assert split.options == ["train", "val"] and split.value == "val"
    split.set_value("train").run()
    assert _ok(at)["Images"] == "2" and "split **train** · 2 images" in _captions(at)


def test_a_voc_zip_states_the_difficult_rule(tmp_path, monkeypatch):
    at = _upload_zip(_page(monkeypatch), "voc.zip", zip_folder(_voc_folder(tmp_path), under="VOC2007"))
    m = _ok(at)
    assert m["Images"] == "2"
    assert "Read as **VOC** · 2 images" in _captions(at) and sources.VOC_DIFFICULT_RULE in _captions(at)
    boxes = next(x for x in at.metric if x.label == "Boxes")
    assert "2 crowd boxes are not matched" in boxes.help
    assert not at.warning, [w.value for w in at.warning]


def test_a_zip_with_several_datasets_names_them_and_the_format_chooses(tmp_path, monkeypatch):
    folder = _voc_folder(tmp_path)
    coco, _ = synthetic.make_dataset(2, seed=1)
    text(folder / "instances.json", json.dumps(coco))
    at = _upload_zip(_page(monkeypatch), "both.zip", zip_folder(folder))
    assert not at.exception and not at.metric
    assert any("both.zip holds several datasets: instances.json (coco), . (voc)" in e.value for e in at.error)
    at.selectbox(key="dd_zip_format").set_value("coco").run()
    assert _ok(at)["Images"] == "2" and "Read as **COCO**" in _captions(at)


def test_the_data_root_lists_yolo_and_voc_datasets(tmp_path, monkeypatch):
    _yolo_folder(tmp_path)
    _voc_folder(tmp_path)
    at = _page(monkeypatch, tmp_path)
    at.radio(key="dd_source").set_value("Server data folder").run()
    _ok(at)
    assert at.selectbox(key="dd_server_json").options == ["VOC2007/", "yolo/data.yaml"]
    at.selectbox(key="dd_server_json").set_value("yolo/data.yaml").run()
    assert _ok(at)["Images"] == "3" and "Read as **YOLO** · split **val**" in _captions(at)
    assert not at.warning, [w.value for w in at.warning]  # the images are the dataset's own folder
    at.selectbox(key="dd_server_split:yolo/data.yaml").set_value("train").run()
    assert _ok(at)["Images"] == "2"
    at.selectbox(key="dd_server_json").set_value("VOC2007/").run()
    assert _ok(at)["Images"] == "2" and sources.VOC_DIFFICULT_RULE in _captions(at)


def test_a_data_yaml_pointing_outside_the_root_is_refused(tmp_path, monkeypatch):
    folder = _yolo_folder(tmp_path)
    root = tmp_path / "root"
    text(root / "escape" / "data.yaml", f"path: {folder}\ntrain: images/train\nnames: [a]\n")
    at = _page(monkeypatch, root)
    at.radio(key="dd_source").set_value("Server data folder").run()
    assert not at.exception and not at.metric
    assert any(f"'path' {folder} is outside {root}" in e.value for e in at.error), [e.value for e in at.error]
