from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from explorer import synthetic
from explorer.synthetic import SceneConfig, make_dataset, make_scene

# SHA-256 of the built-in sample dataset (annotations + raw pixels). It changes only with SAMPLE_VERSION.
SAMPLE_DIGEST = "1af3fd01570af79437c44509a6e16857ea9589d4171320b130d6e9bd83360251"


def test_scene_is_deterministic_and_seed_dependent():
    a_img, a_anns = make_scene(7)
    b_img, b_anns = make_scene(7)
    c_img, _ = make_scene(8)
    assert np.array_equal(a_img, b_img) and a_anns == b_anns
    assert not np.array_equal(a_img, c_img)


def test_scene_boxes_are_tight_valid_coco():
    cfg = SceneConfig(width=320, height=240, n_objects=(10, 10))
    img, anns = make_scene(3, cfg)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert len(anns) >= 8
    for ann in anns:
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240
        assert ann["area"] == pytest.approx(w * h)
        assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= len(synthetic.CLASS_NAMES)
        assert len(ann["segmentation"][0]) >= 6


def test_object_count_sizes_and_long_tail_are_controllable():
    coco, _ = make_dataset(30, 1, SceneConfig(width=256, height=256, n_objects=(5, 5), max_size=64))
    sides = np.array([max(a["bbox"][2:]) for a in coco["annotations"]])
    assert sides.min() <= 12  # tiny objects exist
    assert sides.max() <= 64 * 1.5  # rotated shapes may exceed the nominal side a little
    counts = np.bincount([a["category_id"] for a in coco["annotations"]], minlength=9)[1:]
    assert counts[0] > 3 * counts[-1]  # long tail by default
    balanced, _ = make_dataset(30, 1, SceneConfig(width=256, height=256, n_objects=(5, 5), tail_power=0))
    bal = np.bincount([a["category_id"] for a in balanced["annotations"]], minlength=9)[1:]
    assert bal.max() < 3 * bal.min()
    only_two = SceneConfig(width=128, height=128, class_weights=(1, 1, 0, 0, 0, 0, 0, 0))
    coco2, _ = make_dataset(5, 2, only_two)
    assert {a["category_id"] for a in coco2["annotations"]} <= {1, 2}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 8},
        {"n_objects": (5, 2)},
        {"min_size": 50, "max_size": 10},
        {"class_weights": (1.0, 2.0)},
    ],
)
def test_bad_config_raises_value_error(kwargs):
    with pytest.raises(ValueError):
        SceneConfig(**kwargs)


def test_written_dataset_round_trips_through_pycocotools(tmp_path):
    ann_path = synthetic.write_dataset(tmp_path, 3, 5, SceneConfig(width=160, height=120))
    coco = COCO(str(ann_path))
    assert len(coco.getImgIds()) == 3
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(synthetic.CLASS_NAMES)
    for info in coco.loadImgs(coco.getImgIds()):
        with Image.open(tmp_path / "images" / info["file_name"]) as im:
            assert im.size == (info["width"], info["height"])
    data = json.loads(ann_path.read_text())
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


@pytest.mark.slow
def test_sample_dataset_checksum_is_identical_everywhere():
    coco, arrays = make_dataset(synthetic.SAMPLE_IMAGES, synthetic.SAMPLE_SEED)
    assert len(coco["images"]) == 200
    small = np.mean([a["area"] < 32**2 for a in coco["annotations"]])
    assert small > 0.3  # many small objects
    assert synthetic.dataset_digest(coco, arrays) == SAMPLE_DIGEST


def test_sample_dataset_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "SAMPLE_IMAGES", 2)
    path = synthetic.sample_dataset(tmp_path / "sample")
    assert path.exists() and len(list((tmp_path / "sample" / "images").glob("*.jpg"))) == 2
    mtime = path.stat().st_mtime_ns
    assert synthetic.sample_dataset(tmp_path / "sample") == path
    assert path.stat().st_mtime_ns == mtime


def test_cli_writes_a_dataset(tmp_path, capsys):
    assert synthetic.main([str(tmp_path / "d"), "--images", "2", "--width", "64", "--height", "64"]) == 0
    assert (tmp_path / "d" / "annotations.json").exists()
    with pytest.raises(SystemExit) as exc:
        synthetic.main([str(tmp_path / "e"), "--images", "1", "--width", "4"])
    assert exc.value.code == 2
    assert "at least 16x16" in capsys.readouterr().err
