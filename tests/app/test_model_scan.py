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
    # per class: AP from the same COCOeval as the CLI, the class's boxes over the scanned images
    from explorer.dataset.coco import load_coco
    from explorer.model_scan.ap import coco_ap

    scan = state.acc.result()
    ds = load_coco(synthetic.sample_dataset())
    want = coco_ap(ds, scan.detections, scan.images["image_id"].tolist())
    shown = {m.label: m.value for m in at.metric}
    assert shown["AP"] == f"{want['AP']:.3f}" and shown["AP50"] == f"{want['AP50']:.3f}"
    table = next(d.value for d in at.dataframe if "positive anchors" in d.value.columns)
    scanned = set(scan.images["image_id"])
    boxes = sum(len(ds.image_annotations(i).boxes_xyxy) for i in range(ds.num_images) if ds.image_ids[i] in scanned)
    assert table["boxes"].sum() == boxes and table["positive anchors"].sum() == scan.images["positives"].sum()


def test_an_image_opens_in_live_detections_with_its_ground_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.dataset.coco import load_coco
    from ui.detection import SENT, SentImage

    monkeypatch.chdir(ROOT)
    path = synthetic.sample_dataset()
    ds = load_coco(path)
    name = ds.file_names[5]
    at = AppTest.from_file(str(ROOT / "pages" / "4_Live_detections.py"), default_timeout=120)
    at.session_state[SENT] = SentImage((path.parent / "images" / name).read_bytes(), name, ds, 5, "the model scan")
    at.session_state["det_source"] = "Sent image"
    at.run()
    _ok(at)
    assert any(name in c.value and "sent from the model scan" in c.value for c in at.sidebar.caption)
    # the ground truth came with it: the loss maps (which need it) are drawn, not the "need ground truth" notice
    assert not any("loss maps need ground truth" in i.value for i in at.info)
    assert at.session_state["det_source"] == "Sent image"


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
