"""AppTest checks of the Loss lab page: every tab loads, controls and query parameters drive the view."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "1_Loss_lab.py")
TABS = ["Classification", "Soft targets", "Box losses", "Where the loss goes"]


def run_page(monkeypatch, **query: str | list[str]) -> AppTest:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    at = AppTest.from_file(PAGE, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.error])


@pytest.mark.parametrize("tab", TABS)
def test_each_tab_loads(monkeypatch, tab: str) -> None:
    at = run_page(monkeypatch, tab=tab)
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value.endswith("Loss lab")
    assert len(at.get("plotly_chart")) >= 1


def test_classification_readout_follows_slider_and_query(monkeypatch) -> None:
    at = run_page(monkeypatch)
    assert "100× smaller" in texts(at)
    at.slider(key="gamma").set_value(3.0).run()
    assert not at.exception
    assert "1,000× smaller" in texts(at)
    at = run_page(monkeypatch, gamma="1.0", pt="0.99", losses=["CE", "FL*"])
    assert "100× smaller" in texts(at)
    assert at.multiselect(key="losses").value == ["CE", "FL*"]


def test_bad_query_params_are_ignored(monkeypatch) -> None:
    at = run_page(monkeypatch, gamma="lots", alpha="-3", tab="nope", n="12")
    assert at.slider(key="gamma").value == 2.0
    assert at.slider(key="alpha").value == 0.25


def test_budget_reacts_to_controls(monkeypatch) -> None:
    at = run_page(monkeypatch, tab="Where the loss goes")
    metrics = {m.label: m.value for m in at.metric}
    ce_easy = float(metrics["CE: easy negatives' share of the loss"].rstrip("%"))
    fl_easy = float(metrics["focal: easy negatives' share of the loss"].rstrip("%"))
    assert ce_easy > 50 > 5 > fl_easy
    at.slider(key="gamma").set_value(0.0).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["focal: easy negatives' share of the loss"] == metrics["α-CE: easy negatives' share of the loss"]
    at.multiselect(key="cdf_gammas").set_value([]).run()
    assert not at.exception and "Choose at least one γ" in texts(at)


def test_query_params_restore_a_shared_view(monkeypatch) -> None:
    at = run_page(monkeypatch, target="background", alpha_on="true", axis="logit", alpha="0.5")
    assert at.get("button_group")[1].value == "background"
    assert "200× with α_t = 0.5" in texts(at)
    at = run_page(monkeypatch, tab="Where the loss goes", n="1M", pos_pct="1.0")
    assert "10,000 positives" in texts(at)


def test_sandbox_degenerate_box_shows_error(monkeypatch) -> None:
    at = run_page(monkeypatch, tab="Box losses", pred_x=["80", "80"])
    assert any("x2 > x1" in e.value for e in at.error)


def test_box_and_soft_controls(monkeypatch) -> None:
    at = run_page(monkeypatch, tab="Box losses")
    at.toggle(key="gated").set_value(True).run()
    at.multiselect(key="box_losses").set_value([]).run()
    assert not at.exception and "Choose at least one loss" in texts(at)
    at = run_page(monkeypatch, tab="Soft targets", dfl_n="8", dfl_y="12.0")
    assert any("clipped" in w.value for w in at.warning)
