"""Smoke test: the home page and every page file run in Streamlit's AppTest without an exception."""

from __future__ import annotations

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
    assert metrics["Anchors, 800×800 input"] == "120,087"
    assert metrics["Anchors, 800×1333 input"] == "201,600"
    assert int(metrics["Positives in a sample scene"].replace(",", "")) > 0
    assert any("Device:" in m.value for m in at.markdown)


@pytest.mark.parametrize("script", SCRIPTS[1:])
def test_page_runs_through_the_app_entrypoint(script, monkeypatch):
    """As `streamlit run app.py` serves it: the page's sidebar links every page, "Home" included."""
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(script).run()
    assert not at.exception, [e.value for e in at.exception]
    links = [el.proto.label for el in at.sidebar if el.type == "page_link"]
    assert links[0] == "Home" and len(links) == len(SCRIPTS)
