"""The Streamlit caches of ui/: every cached function is keyed on everything it reads (no pixels of one user's
upload reach another user), and the large ones are bounded by bytes."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image

from explorer.anchors import default_config
from explorer.scan import ScanConfig
from ui import dataset as ui_dataset


def _png(color: int, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), color, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_image_stores_have_an_identity_of_their_content(tmp_path):
    a = ui_dataset.ZipImages(_zip({"private_photo.png": _png(200)}))
    b = ui_dataset.ZipImages(_zip({"other.png": _png(10)}))
    assert a.identity != b.identity
    assert a.identity == ui_dataset.ZipImages(_zip({"private_photo.png": _png(200)})).identity
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    assert ui_dataset.FolderImages(tmp_path / "x").identity != ui_dataset.FolderImages(tmp_path / "y").identity


def test_crops_of_one_store_never_reach_another_with_the_same_annotations():
    """Issue 9.1: session A's zip holds the image, session B's (same JSON) does not; B must get no crops."""
    rows = [("private_photo.png", (8.0, 8.0, 40.0, 40.0), "cat")]
    key = "same-json-digest:same-config"
    store_a = ui_dataset.ZipImages(_zip({"private_photo.png": _png(200)}))
    store_b = ui_dataset.ZipImages(_zip({"unrelated.png": _png(10)}))
    assert len(ui_dataset.crops(key, store_a.identity, store_a, rows)) == 1
    assert ui_dataset.crops(key, store_b.identity, store_b, rows) == []


def test_anchor_view_of_one_store_never_reaches_another():
    config = ScanConfig(anchors=default_config("torchvision", min_size=128, max_size=128))
    boxes, classes = np.array([[8.0, 8.0, 40.0, 40.0]], np.float32), ["cat"]
    store_a = ui_dataset.ZipImages(_zip({"private_photo.png": _png(200)}))
    store_b = ui_dataset.ZipImages(_zip({"unrelated.png": _png(10)}))
    args = ("same-json-digest:0", "private_photo.png", config, True)
    picture, _, _ = ui_dataset.anchor_view(*args, store_a.identity, store_a, boxes, classes)
    assert picture is not None
    picture, _, message = ui_dataset.anchor_view(*args, store_b.identity, store_b, boxes, classes)
    assert picture is None and "not among the images" in message
