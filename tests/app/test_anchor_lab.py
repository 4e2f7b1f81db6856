"""AppTest of the Anchor lab page: default inputs and a few widget changes run without an exception."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import synthetic

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "2_Anchor_lab.py")


@pytest.fixture(scope="module", autouse=True)
def _sample_ready() -> None:
    synthetic.sample_dataset()


@pytest.fixture
def app() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=90)


def _ok(at: AppTest) -> dict[str, str]:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return {m.label: m.value for m in at.metric}


def test_default_and_widget_changes(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    at = app.run()
    metrics = _ok(at)
    assert at.title[0].value.endswith("Anchor lab")
    assert metrics["Anchors"] == "163,206"  # 640x480 scene -> 800x1066
    positives = int(metrics["Positive"].replace(",", ""))
    assert positives > 0
    at.sidebar.slider(key="al_pos").set_value(0.7).run()
    higher = _ok(at)
    assert int(higher["Positive"].replace(",", "")) < positives
    at.sidebar.toggle(key="al_lq").set_value(False).run()
    _ok(at)
    at.sidebar.radio(key="al_assigner").set_value("atss").run()
    assert int(_ok(at)["Ignored"].replace(",", "")) == 0
    at.sidebar.selectbox(key="al_convention").set_value("detectron2").run()
    _ok(at)
    at.radio(key="al_source").set_value("dataset").run()
    _ok(at)
    at.sidebar.slider(key="al_levels").set_value((3, 5)).run()
    _ok(at)


@pytest.mark.parametrize("tab", ["Anchors at a location", "Per level", "Per GT", "Threshold sweep"])
def test_every_tab_renders(app: AppTest, monkeypatch: pytest.MonkeyPatch, tab: str) -> None:
    monkeypatch.chdir(ROOT)
    at = app.run()
    at.session_state["al_tab"] = tab  # tabs run lazily: only the open one renders
    at.run()
    _ok(at)
    assert len(at.dataframe) >= 1, f"{tab} shows no table"


def test_view_switch(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    at = app.run()
    for view in ("GT boxes", "Hard-negative density", "Ignored anchors", "Positive anchors"):
        at.button_group(key="al_view").set_value(view).run()
        _ok(at)
        assert len(at.get("image")) == 1
        # Controls that do not apply to the view are disabled rather than silently ignored.
        assert at.multiselect(key="al_show_levels").disabled == (view in ("GT boxes", "Hard-negative density"))
        assert at.toggle(key="al_show_ign").disabled == (view != "Positive anchors")
    at.toggle(key="al_per_level").set_value(True).run()
    _ok(at)
    assert len(at.get("image")) == 5  # one image per level P3..P7


def test_no_resize_shows_floor_explanation(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    at = app.run()
    at.sidebar.toggle(key="al_resize").set_value(False).run()
    metrics = _ok(at)
    assert metrics["Anchors"] == "57,600"  # 480x640 as is: 9 x (60x80 + 30x40 + 15x20 + 8x10 + 4x5)
    text = " ".join(m.value for m in at.markdown)
    assert "floor convention" in text


def test_coco_file_kept_across_images(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the COCO uploader lost its file when the image changed (seen in a browser), so the next image
    had no boxes. The file now lives in the session until the user asks for another one."""
    monkeypatch.chdir(ROOT)
    coco_path = Path(synthetic.sample_dataset())
    coco_path = coco_path if coco_path.suffix == ".json" else next(coco_path.rglob("*.json"))
    at = app.run()
    at.radio(key="al_source").set_value("dataset").run()
    at.session_state["al_coco_file"] = (coco_path.name, coco_path.read_bytes())
    at.radio(key="al_boxsrc_True").set_value("coco").run()  # sample images have their own boxes too
    _ok(at)
    names = at.selectbox(key="al_sample_name").options
    counts = []
    for name in names[:2]:
        at.selectbox(key="al_sample_name").set_value(name).run()
        _ok(at)
        caption = next(c.value for c in at.caption if "GT box(es)" in c.value)
        counts.append(int(caption.split(" GT box(es)")[0].rsplit(";", 1)[1]))
        assert any(coco_path.name in c.value for c in at.caption)
    assert all(c > 0 for c in counts), counts
    at.button(key="al_coco_forget").click().run()
    _ok(at)
    assert "al_coco_file" not in at.session_state


def test_upload_prompt_states_the_servers_pixel_budget(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")  # hosted default: 16 MP, not the local 50 MP
    at = app.run()
    at.radio(key="al_source").set_value("upload").run()
    _ok(at)
    assert any("Images up to 16 megapixels" in c.value for c in at.caption), [c.value for c in at.caption]


def test_crowd_regions_are_noted_and_left_out_of_matching(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A COCO file with a crowd region over the image: the page says so, and the labels are those without it."""
    monkeypatch.chdir(ROOT)
    coco = json.loads(Path(synthetic.sample_dataset()).read_text())
    first = coco["images"][0]
    at = app.run()
    at.radio(key="al_source").set_value("dataset").run()
    at.selectbox(key="al_sample_name").set_value(first["file_name"]).run()
    own = _ok(at)
    crowd = {"id": 10**6, "image_id": first["id"], "category_id": 1, "bbox": [0, 0, 300, 200], "iscrowd": 1}
    coco["annotations"].append({**crowd, "area": 60000})
    at.session_state["al_coco_file"] = ("with_crowd.json", json.dumps(coco).encode())
    at.radio(key="al_boxsrc_True").set_value("coco").run()
    assert _ok(at) == own  # the crowd region labels no anchor
    assert any("1 crowd region(s): drawn hatched, left out of matching" in i.value for i in at.info)


def test_assigners_side_by_side_on_a_sample_scene(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo model's scores and boxes feed TAL and SimOTA; each picked assigner gets an image, the per-box table
    has one column per assigner, and the soft targets of TAL are drawn."""
    monkeypatch.chdir(ROOT)
    at = app.run()
    at.session_state["al_tab"] = "Assigners side by side"
    at.run()
    _ok(at)
    assert at.multiselect(key="al_compare_True").value == ["max_iou", "atss", "tal_mmdet", "simota"]
    assert len(at.get("image")) == 4  # one picture per assigner
    frame = at.dataframe[0].value
    assert {"max-IoU", "ATSS", "TAL (mmdet)", "SimOTA", "differs"} <= set(frame.columns)
    losses = at.dataframe[2].value.set_index("assigner")
    assert list(losses.index) == ["max-IoU", "ATSS", "TAL (mmdet)", "SimOTA"] and losses["focal"].gt(0).all()
    at.multiselect(key="al_compare_True").set_value(["max_iou", "tal_ultralytics"]).run()
    _ok(at)
    assert set(at.dataframe[0].value.columns) >= {"max-IoU", "TAL (Ultralytics)"} and len(at.get("image")) == 2


def test_box_classes_map_to_the_models_labels_by_name_or_a_chosen_class() -> None:
    from explorer.dataset.image_boxes import BoxSet
    from ui.assigners import model_labels

    names = {1: "circle", 2: "Square"}
    gts = BoxSet(np.zeros((3, 4), np.float32), ["circle", "square ", "person"])
    assert model_labels(gts, names) == (None, ["person"])
    labels, missing = model_labels(gts, names, fallback=2)
    assert labels.tolist() == [1, 2, 2] and missing == ["person"]


def test_voc_xml_boxes_with_a_difficult_object_as_an_ignore_region(app: AppTest, monkeypatch: pytest.MonkeyPatch):
    """A VOC .xml for the image: its objects are the boxes; a difficult one is an ignore region (noted, hatched,
    left out of matching): the labels equal those of the same file without it."""
    monkeypatch.chdir(ROOT)
    cat = "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>101</xmin><ymin>81</ymin><xmax>300</xmax><ymax>260</ymax></bndbox></object>"  # noqa: E501
    hard = "<object><name>dog</name><difficult>1</difficult><bndbox><xmin>301</xmin><ymin>201</ymin><xmax>600</xmax><ymax>460</ymax></bndbox></object>"  # noqa: E501
    size = "<size><width>640</width><height>480</height><depth>3</depth></size>"
    at = app.run()
    at.radio(key="al_boxsrc_True").set_value("voc").run()
    assert not at.exception and _ok(at)["Positive"] == "0"  # no file yet: no boxes
    at.file_uploader(key="al_voc").set_value(("a.xml", f"<annotation>{size}{cat}</annotation>".encode(), "text/xml"))
    plain = _ok(at.run())
    assert "; 1 GT box(es)" in " ".join(c.value for c in at.caption) and int(plain["Positive"].replace(",", "")) > 0
    at.file_uploader(key="al_voc").set_value(("b.xml", f"<annotation>{size}{cat}{hard}</annotation>".encode(), "text/xml"))  # fmt: skip  # noqa: E501
    assert _ok(at.run()) == plain
    assert "; 1 GT box(es)" in " ".join(c.value for c in at.caption)
    assert any(
        "1 difficult object(s): ignore regions, drawn hatched and left out of matching" in i.value for i in at.info
    )
