"""The Streamlit caches of ui/: every cached function is keyed on everything it reads (no pixels of one user's
upload reach another user), and the large ones are bounded by bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.anchors.grid import default_config
from explorer.dataset import image_stores as stores
from explorer.dataset.scan_config import ScanConfig
from explorer.detection import architectures
from explorer.detection.architectures import LoadedModel
from tests.helpers import zip_bytes
from ui import anchors as ui_anchors
from ui import common as ui_common
from ui import dataset as ui_dataset
from ui import detection as ui_detections
from ui import sources as ui_sources


def _png(color: int, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), color, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_stores_have_an_identity_of_their_content(tmp_path):
    a = stores.ZipImages(zip_bytes({"private_photo.png": _png(200)}))
    b = stores.ZipImages(zip_bytes({"other.png": _png(10)}))
    assert a.identity != b.identity
    assert a.identity == stores.ZipImages(zip_bytes({"private_photo.png": _png(200)})).identity
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    assert stores.FolderImages(tmp_path / "x").identity != stores.FolderImages(tmp_path / "y").identity


def test_crops_of_one_store_never_reach_another_with_the_same_annotations():
    """Issue 9.1: session A's zip holds the image, session B's (same JSON) does not; B must get no crops."""
    rows = [("private_photo.png", (8.0, 8.0, 40.0, 40.0), "cat")]
    key = "same-json-digest:same-config"
    store_a = stores.ZipImages(zip_bytes({"private_photo.png": _png(200)}))
    store_b = stores.ZipImages(zip_bytes({"unrelated.png": _png(10)}))
    assert len(ui_dataset.crops(key, store_a, rows)) == 1
    assert ui_dataset.crops(key, store_b, rows) == []


def test_anchor_view_of_one_store_never_reaches_another():
    config = ScanConfig(anchors=default_config("torchvision", min_size=128, max_size=128))
    boxes, classes = np.array([[8.0, 8.0, 40.0, 40.0]], np.float32), ["cat"]
    store_a = stores.ZipImages(zip_bytes({"private_photo.png": _png(200)}))
    store_b = stores.ZipImages(zip_bytes({"unrelated.png": _png(10)}))
    args = ("same-json-digest:0", "private_photo.png", config, True)
    no_crowd = np.zeros((0, 4), np.float32)
    picture, _, _ = ui_dataset.anchor_view(*args, store_a, boxes, classes, no_crowd)
    assert picture is not None
    picture, _, message = ui_dataset.anchor_view(*args, store_b, boxes, classes, no_crowd)
    assert picture is None and "not among the images" in message


def test_image_views_are_keyed_on_the_servers_pixel_budget(monkeypatch):
    """A cached picture decoded under one budget is not served once the budget no longer allows that image."""
    config = ScanConfig(anchors=default_config("torchvision", min_size=128, max_size=128))
    store = stores.ZipImages(zip_bytes({"photo.png": _png(200)}))
    boxes, no_crowd = np.array([[8.0, 8.0, 40.0, 40.0]], np.float32), np.zeros((0, 4), np.float32)
    args = ("digest:0", "photo.png", config, True, store, boxes, ["cat"], no_crowd)
    rows = [("photo.png", (8.0, 8.0, 40.0, 40.0), "cat")]
    assert ui_dataset.anchor_view(*args)[0] is not None and len(ui_dataset.crops("digest:cfg", store, rows)) == 1
    monkeypatch.setenv("FOCALSCOPE_MAX_PIXELS", "100")
    picture, _, message = ui_dataset.anchor_view(*args)
    assert (picture is None and "megapixels" in message) or "MP" in message
    assert ui_dataset.crops("digest:cfg", store, rows) == []


# ---------------------------------------------------------------- models (issue 9.6)


def _fake_model(n_floats: int) -> LoadedModel:
    module = torch.nn.Linear(n_floats, 1, bias=False)
    return LoadedModel(module, architectures.DEMO, "checkpoint", {1: "thing"}, torch.device("cpu"))


@pytest.fixture
def fresh_models(monkeypatch):
    """The shared model caches emptied before and after the test; ``builds`` counts model loads by kind."""
    builds: list[str] = []
    sizes = {"checkpoint": 1000, architectures.V2: 1000}

    def fake_build(req):
        builds.append(req.checkpoint.decode() if req.checkpoint else req.kind)
        return _fake_model(sizes[req.kind])

    monkeypatch.setattr(ui_detections, "_build", fake_build)
    caches = [
        getattr(ui_detections, name) for name in ("_models", "_failures", "_load") if hasattr(ui_detections, name)
    ]
    for fn in caches:
        fn.clear()
    yield builds, sizes
    for fn in caches:
        fn.clear()


def test_two_users_on_two_models_do_not_reload_them_on_every_rerun(fresh_models, monkeypatch):
    builds, _ = fresh_models
    monkeypatch.setenv("FOCALSCOPE_MODELS", "3")
    ckpt = ui_detections.ModelRequest("checkpoint", checkpoint=b"weights of user A")
    coco = ui_detections.ModelRequest(architectures.V2)
    for _ in range(3):  # user A's rerun, user B's rerun, ...
        first = ui_detections.load_model(ckpt)
        second = ui_detections.load_model(coco)
    assert builds == ["weights of user A", architectures.V2]
    assert first.model is not second.model


def test_models_are_evicted_least_recently_used_within_the_memory_budget(fresh_models, monkeypatch):
    builds, sizes = fresh_models
    monkeypatch.setenv("FOCALSCOPE_MODELS", "5")
    monkeypatch.setenv("FOCALSCOPE_MODEL_MEMORY_MB", "1")
    sizes["checkpoint"] = 100_000  # 400 KB each: two fit in 1 MB, three do not
    a, b, c = (ui_detections.ModelRequest("checkpoint", checkpoint=name) for name in (b"a", b"b", b"c"))
    for req in (a, b, a, c, a, b):  # c evicts b, the least recently used; a stays
        ui_detections.load_model(req)
    assert builds == ["a", "b", "c", "b"]


def test_a_model_larger_than_the_whole_budget_is_refused_with_a_message(fresh_models, monkeypatch):
    _, sizes = fresh_models
    monkeypatch.setenv("FOCALSCOPE_MODEL_MEMORY_MB", "1")
    sizes["checkpoint"] = 1_000_000  # 4 MB
    served = ui_detections.load_model(ui_detections.ModelRequest("checkpoint", checkpoint=b"big"))
    assert served.message is not None and "model memory budget of 1 MB" in served.message
    assert "FOCALSCOPE_MODEL_MEMORY_MB" in served.message
    assert served.model.arch == "demo" and served.key == ui_detections.DEMO_KEY


# ---------------------------------------------------------------- memory (issue 9.7)


@pytest.mark.parametrize("module", [ui_anchors, ui_detections])
def test_uploads_are_decoded_within_the_servers_pixel_budget(module, monkeypatch):
    monkeypatch.setenv("FOCALSCOPE_MAX_PIXELS", "1000")
    data = _png(30, size=64)  # 4,096 pixels
    with pytest.raises(ValueError, match="over the limit"):
        module.decode_upload(ui_common.digest(data) + module.__name__, data)


def test_decoded_images_are_evicted_by_bytes(monkeypatch):
    monkeypatch.setenv("FOCALSCOPE_CACHE_MB", "1")
    ui_common._shared_cache.clear()
    first, second = _png(1, size=500), _png(2, size=500)  # 750,000 bytes of pixels each: two do not fit in 1 MB
    ui_common.decode_upload(ui_common.digest(first), first)
    ui_common.decode_upload(ui_common.digest(second), second)
    cache = ui_common.shared_cache("images", max_entries=4)
    assert [k[0] for k in cache.lru_keys()] == [ui_common.digest(second)]
    assert cache.nbytes == 500 * 500 * 3
    ui_common._shared_cache.clear()


def test_zip_stores_are_bounded_by_the_bytes_they_hold(monkeypatch):
    monkeypatch.setenv("FOCALSCOPE_CACHE_MB", "1")
    ui_common._shared_cache.clear()
    rng = np.random.default_rng(0)
    zips = [zip_bytes({f"{k}.bin": rng.bytes(600_000)}) for k in range(2)]  # 600 KB each, incompressible
    for data in zips:
        store = ui_sources.zip_store(ui_common.digest(data), data)
        assert stores.ZipImages.__sizeof__(store) >= 600_000
    cache = ui_common.shared_cache("zips", ui_sources.ZIP_CACHE_ENTRIES)
    assert cache.lru_keys() == [ui_common.digest(zips[1])]
    ui_common._shared_cache.clear()
