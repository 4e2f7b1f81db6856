"""AppTest of the Model scan page: the sample with the demo model, run, stop-and-continue state, every tab."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import synthetic

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "5_Model_scan.py")


@pytest.fixture(scope="module", autouse=True)
def _sample_ready() -> None:
    synthetic.sample_dataset()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_run_on_the_sample_with_the_demo_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    _ok(at)
    assert any("press Run to scan" in i.value for i in at.info)
    at.sidebar.number_input(key="ms_limit").set_value(3).run()
    at.button(key="ms_start").click().run()
    _ok(at)
    state = at.session_state["ms_run"]
    assert state.done == 3 and state.finished and not at.session_state["ms_running"]
    labels = [m.label for m in at.metric]
    assert "Focal loss / image" in labels and "TP / FP / FN" in labels
    focal = float(next(m.value for m in at.metric if m.label == "Focal loss / image"))
    rows = state.acc.result().images
    assert focal == pytest.approx(rows["focal_loss"].mean(), abs=1e-4)
    assert any("relative of the exact sums" in c.value for c in at.caption)
    # the shares follow the sliders without running the model again
    at.slider(key="ms_gamma").set_value(0.0).run()
    _ok(at)
    assert at.session_state["ms_run"].done == 3
    if len(state.acc.problems):
        at.radio(key="ms_problem").set_value("not_found").run()
        _ok(at)


def test_changed_settings_ask_for_a_new_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.number_input(key="ms_limit").set_value(2).run()
    at.button(key="ms_start").click().run()
    _ok(at)
    at.sidebar.slider(key="ms_score").set_value(0.7).run()
    _ok(at)
    assert any("settings changed" in c.value for c in at.caption)
    assert any("press Run" in i.value for i in at.info)


def test_assigners_compared_over_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.number_input(key="ms_limit").set_value(2).run()
    at.sidebar.multiselect(key="ms_assigners").set_value(["max_iou", "tal_ultralytics"]).run()
    at.button(key="ms_start").click().run()
    _ok(at)
    table = next(d.value for d in at.dataframe if "assigner" in d.value.columns)
    assert table["assigner"].tolist() == ["max-IoU", "TAL (Ultralytics)"]
    rows = at.session_state["ms_run"].acc.result().images
    assert table["positive anchors"].tolist() == [
        rows["max_iou_positives"].sum(),
        rows["tal_ultralytics_positives"].sum(),
    ]
