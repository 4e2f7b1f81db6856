"""AppTest checks of the Live detections page: default view, candidates, offline COCO fallback, checkpoints and
uploads with ground truth, bad input shown as messages (never an exception)."""

from __future__ import annotations

import io
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.detection import architectures
from explorer.detection.view import sample_scene

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "4_Live_detections.py")


def run_page(monkeypatch, setup=None) -> AppTest:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if setup is not None:
        setup(at)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.error])


def test_default_view_runs_the_demo_model_with_loss_shares(monkeypatch):
    at = run_page(monkeypatch)
    assert at.title[0].value.endswith("Live detections")
    body = texts(at)
    assert "held-out scene 1" in body and "network input 640×480" in body
    assert "Image loss normalised by max(1, positives)" in body
    assert not at.error
    at.radio(key="det_view").set_value("Candidates before NMS").run()
    assert not at.exception
    assert "candidates before NMS" in texts(at)


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_coco_model_offline_falls_back_to_the_demo_model(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    at = run_page(monkeypatch, lambda at: at.selectbox(key="det_model").set_value(architectures.V2))
    assert not at.error and not at.exception  # offline is expected: a warning, not an error box
    message = next(w.value for w in at.warning if "not in the torch hub cache" in w.value)
    assert "showing the demo model instead" in message


def _upload(at: AppTest, index: int, name: str, data: bytes) -> None:
    at.sidebar.file_uploader[index].set_value((name, data, "application/octet-stream"))


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_checkpoint_upload_good_and_bad(monkeypatch):
    def choose(at: AppTest) -> None:
        at.selectbox(key="det_model").set_value("checkpoint")

    at = run_page(monkeypatch, choose)
    assert "Upload a checkpoint" in texts(at)
    _upload(at, 0, "broken.pt", b"definitely not a checkpoint")
    at.run()
    assert not at.exception
    assert at.error and "not a PyTorch checkpoint" in at.error[0].value
    _upload(at, 0, "empty.pt", b"")
    at.run()
    assert at.error and "the checkpoint is empty (0 bytes)" in at.error[0].value
    buf = io.BytesIO()
    torch.save({"weights": _Custom()}, buf)
    _upload(at, 0, "object.pt", buf.getvalue())
    at.run()
    assert not at.exception
    # the refused global is shown literally, Markdown-escaped ("__main__.Foo" would render as a bold "main.Foo")
    assert at.error and "Python object " in at.error[0].value
    assert r"test\_live\_detections.\_Custom" in at.error[0].value
    _upload(at, 0, "demo.pt", architectures.DEMO_WEIGHTS.read_bytes())
    at.run()
    assert not at.exception and not at.error


class _Custom:
    """An arbitrary object that torch.load(weights_only=True) refuses."""


def _png(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
@pytest.mark.parametrize("with_gt", [True, False])
def test_upload_with_coco_ground_truth(monkeypatch, with_gt):
    scene = sample_scene(1)
    coco = {
        "images": [{"id": 7, "file_name": "imgs/scene.png", "width": 640, "height": 480}],
        "categories": [{"id": i, "name": n} for i, n in enumerate(["circle", "square", "triangle"], start=1)],
        "annotations": [
            {"id": k + 1, "image_id": 7, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
            for k, ((x1, y1, x2, y2), c) in enumerate(zip(scene.gt_boxes.tolist(), scene.gt_labels, strict=True))
        ],
    }

    def upload(at: AppTest) -> None:
        at.radio(key="det_source").set_value("Upload")

    at = run_page(monkeypatch, upload)
    assert "Upload one or more images" in texts(at)
    _upload(at, 0, "scene.png", _png(scene.image))
    if with_gt:
        _upload(at, 1, "gt.json", json.dumps(coco).encode())
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    body = texts(at)
    if with_gt:
        assert "Image loss normalised" in body, body
    else:
        assert "The loss maps need ground truth: upload a COCO JSON whose image file names match" in body


def test_corrupt_upload_is_an_error_message(monkeypatch):
    at = run_page(monkeypatch, lambda at: at.radio(key="det_source").set_value("Upload"))
    _upload(at, 0, "bad.png", b"\x89PNG\r\n\x1a\n not really")
    at.run()
    assert not at.exception
    assert at.error and "bad.png" in at.error[0].value


def test_ground_truth_in_another_label_space_is_not_matched_by_id(monkeypatch):
    # COCO's "person" has id 1 like the demo model's "circle": matching them by id would call a circle a TP.
    scene = sample_scene(1)
    coco = {
        "images": [{"id": 7, "file_name": "photo.png", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "person"}, {"id": 44, "name": "spoon"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 100, 200]},
            {"id": 2, "image_id": 7, "category_id": 44, "bbox": [300, 300, 40, 40]},
        ],
    }
    at = run_page(monkeypatch, lambda at: at.radio(key="det_source").set_value("Upload"))
    _upload(at, 0, "photo.png", _png(scene.image))
    _upload(at, 1, "instances.json", json.dumps(coco).encode())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warning = next(w.value for w in at.warning if "not the model's classes" in w.value)
    assert "'person'" in warning and "'circle'" in warning and "id 44 'spoon' is not a model class" in warning
    body = texts(at)
    assert "TP" not in body
    # the loss section names the reason instead of asking for the COCO JSON the user just uploaded
    assert "The loss maps need ground truth: the categories of instances.json are not this model's classes" in body
    assert "upload a COCO JSON" not in body


def test_messages_are_markdown_escaped_except_urls(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from ui.detection import md_escape

    text = "needs __main__.Foo, see https://download.pytorch.org/models/a_b_c.pth (URLError: <urlopen error>) *.pt"
    assert md_escape(text) == (
        r"needs \_\_main\_\_.Foo, see https://download.pytorch.org/models/a_b_c.pth (URLError: \<urlopen error\>) \*.pt"
    )


def test_too_elongated_upload_is_an_error_message(monkeypatch):
    at = run_page(monkeypatch, lambda at: at.radio(key="det_source").set_value("Upload"))
    _upload(at, 0, "strip.png", _png(np.zeros((20, 20000, 3), np.uint8)))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error and at.error[0].value.startswith("strip.png: image is too elongated")


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_hosted_server_offers_no_weight_download_without_the_operator(monkeypatch, tmp_path):
    """Issue 9.6: on a hosted server a visitor cannot trigger the COCO-weights download."""
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")
    monkeypatch.delenv("FOCALSCOPE_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    at = run_page(monkeypatch, lambda at: at.selectbox(key="det_model").set_value(architectures.V1))
    assert not [c for c in at.sidebar.checkbox if "Download" in c.label]
    assert "FOCALSCOPE_ALLOW_DOWNLOAD=1" in " ".join(c.value for c in at.sidebar.caption)
    assert any("showing the demo model instead" in w.value for w in at.warning)


def _loss_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "Image loss normalised" in m.value)


def _shown(slider) -> float:
    """What the browser draws: the value the server sends (``set_value``), else the widget's default."""
    proto = slider.proto
    return (proto.value if proto.set_value else proto.default)[0]


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_widgets_keep_their_value_through_a_source_round_trip(monkeypatch):
    """Issue 9.5: after Sample scenes -> Upload -> Sample scenes the sliders show the values the loss uses (the
    server kept gamma 0 while the browser redrew the slider at its default 2.0)."""
    at = run_page(monkeypatch)
    default_line = _loss_line(at)
    at.slider(key="det_gamma").set_value(0.0)
    at.slider(key="det_score").set_value(0.5)
    at.run()
    gamma0_line = _loss_line(at)
    assert gamma0_line != default_line
    at.radio(key="det_source").set_value("Upload").run()
    assert not at.exception
    at.radio(key="det_source").set_value("Sample scenes").run()
    assert not at.exception
    for key, value in (("det_gamma", 0.0), ("det_score", 0.5)):
        assert at.slider(key=key).value == value and _shown(at.slider(key=key)) == value
    assert _loss_line(at) == gamma0_line
