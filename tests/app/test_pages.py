"""Smoke test: the home page and every page file run in Streamlit's AppTest without an exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import synthetic

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["app.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]


@pytest.fixture(scope="module", autouse=True)
def _sample_data_ready():
    synthetic.sample_dataset()  # generate the cached sample once, outside the per-page timeout


@pytest.mark.parametrize("script", SCRIPTS)
def test_page_runs_without_exception(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / script), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title, f"{script} shows no title"


def test_home_page_shows_real_numbers(monkeypatch):
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Anchors 800×800"] == "120,087"
    assert metrics["Anchors 800×1333"] == "201,600"
    assert int(metrics["Positives, scene 1"].replace(",", "")) > 0
    assert any("Device:" in m.value for m in at.markdown)
    assert any("Cached at" in c.value for c in at.caption)


def test_hosted_home_page_does_not_show_the_servers_paths(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert not any("Cached at" in c.value for c in at.caption)


@pytest.mark.parametrize("script", SCRIPTS[1:])
def test_page_runs_through_the_app_entrypoint(script, monkeypatch):
    """As `streamlit run app.py` serves it: the page's sidebar links every page, "Home" included."""
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(script).run()
    assert not at.exception, [e.value for e in at.exception]
    links = [el.proto.label for el in at.sidebar if el.type == "page_link"]
    assert links[0] == "Home" and len(links) == len(SCRIPTS)


def _small_coco() -> bytes:
    coco = json.loads(synthetic.sample_dataset().read_text())
    images = coco["images"][:5]
    ids = {im["id"] for im in images}
    anns = [a for a in coco["annotations"] if a["image_id"] in ids]
    return json.dumps({**coco, "images": images, "annotations": anns}).encode()


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_inputs_and_uploads_are_kept_across_page_changes(monkeypatch):
    """Issue 9.8: going to another page and back keeps each page's inputs and uploads for the session."""
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/3_Dataset_diagnostics.py").run()
    at.radio(key="dd_source").set_value("Upload a COCO JSON").run()
    at.file_uploader(key="dd_json").set_value(("five_images.json", _small_coco(), "application/json")).run()
    at.sidebar.number_input(key="dd_pos").set_value(0.7).run()
    assert not at.exception and at.subheader[0].value == "five_images.json"
    positives = {m.label: m.value for m in at.metric}["Positive"]
    at.switch_page("pages/2_Anchor_lab.py").run()
    at.radio(key="al_source").set_value("scene").run()
    at.number_input(key="al_seed").set_value(11).run()
    at.switch_page("pages/1_Loss_lab.py").run()

    at.switch_page("pages/3_Dataset_diagnostics.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="dd_source").value == "Upload a COCO JSON"
    assert at.sidebar.number_input(key="dd_pos").value == 0.7
    assert at.subheader[0].value == "five_images.json"
    assert {m.label: m.value for m in at.metric}["Positive"] == positives
    assert any("five\\_images.json" in c.value and "uploaded earlier" in c.value for c in at.caption)
    at.switch_page("pages/2_Anchor_lab.py").run()
    assert at.radio(key="al_source").value == "scene" and at.number_input(key="al_seed").value == 11

    other = AppTest.from_file(str(ROOT / "pages" / "3_Dataset_diagnostics.py"), default_timeout=60).run()
    other.radio(key="dd_source").set_value("Upload a COCO JSON").run()  # another session sees none of it
    assert all(s.value != "five_images.json" for s in other.subheader)
    assert any("Upload a COCO instances JSON" in i.value for i in other.info)
    assert not any("uploaded earlier" in c.value for c in other.caption)
