"""Streamlit-aware helpers of the Model scan page: the run (progress, stop, partial results kept for the session)
and its inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from explorer.anchors.compare import ASSIGNERS
from explorer.dataset.coco import CocoDataset
from explorer.model_scan import summary
from explorer.model_scan.image_stats import LossSettings
from explorer.model_scan.run import Accumulator, ModelScan, ModelScanConfig, iter_scan
from explorer.settings import limits
from ui.common import cached, kept
from ui.detection import SentImage, ServedModel, send_image
from ui.sources import Source

STATE = "ms_run"
RUNNING = "ms_running"
#: Images a hosted server scans per run at most (a run holds one CPU of the server).
HOSTED_MAX_IMAGES = 200


@dataclass
class RunState:
    """The session's model scan: what it scans (``key``: dataset digest and name, model, configuration), the
    results so far, how many images it covers, and whether it finished."""

    key: str
    total: int
    acc: Accumulator = field(default_factory=Accumulator)
    finished: bool = False

    @property
    def done(self) -> int:
        return len(self.acc.rows)


def dataset(source: Source) -> CocoDataset:
    """The chosen dataset, read once per source key (content digest, format, split) and name."""
    return cached("coco_ms", (source.key, source.name), source.load, max_entries=2, spinner=f"Reading {source.name}…")


def config_widgets(num_images: int) -> ModelScanConfig:
    """Images to scan, the detection score and the p_t threshold (sidebar)."""
    cap = min(num_images, HOSTED_MAX_IMAGES) if limits().hosted else num_images
    limit = st.number_input(
        "Images to scan", 1, max(1, cap), min(40, max(1, cap)), 10, key=kept("ms_limit"),
        help="A seeded sample of the dataset (all of it when the number covers it). On the CPU the demo model "
        "takes about half a second per image; torchvision's ResNet-50 several seconds.",
    )  # fmt: skip
    seed = st.number_input("Sample seed", 0, 10_000, 0, 1, key=kept("ms_seed"))
    score = st.slider(
        "Detection score", 0.05, 0.95, 0.5, 0.05, key=kept("ms_score"),
        help="Detections at or above it count (TP / FP) and are 'confident' for label problems.",
    )  # fmt: skip
    pt = st.slider("Easy when p_t ≥", 0.3, 0.95, 0.6, 0.05, key=kept("ms_pt"),
                   help="The focal-loss literature calls an example easy when p_t is above about 0.6.")  # fmt: skip
    assigners = st.multiselect(
        "Also compare assigners", list(ASSIGNERS), key=kept("ms_assigners"),
        format_func=lambda k: ASSIGNERS[k].name,
        help="Run these assigners on every image's anchors and the model's outputs (Anchor lab, 'Assigners side "
        "by side'): positives and boxes with no positive under each. TAL and SimOTA take about a second an image.",
    )  # fmt: skip
    return ModelScanConfig(LossSettings(pt_thresh=float(pt)), float(score), int(limit), int(seed), tuple(assigners))


def run_key(source: Source, served: ServedModel, config: ModelScanConfig) -> str:
    return f"{source.key}:{source.name}:{served.key}:{config!r}"


def _start(key: str, total: int) -> None:
    state = st.session_state.get(STATE)
    if state is None or state.key != key or state.finished:
        st.session_state[STATE] = RunState(key, total)
    st.session_state[RUNNING] = True


def _stop() -> None:
    st.session_state[RUNNING] = False


def controls(key: str, total: int) -> RunState | None:
    """Start / stop buttons; the session's run for ``key`` (None when it has not started)."""
    state = st.session_state.get(STATE)
    running = st.session_state.get(RUNNING, False)
    c1, c2 = st.columns([1, 3], vertical_alignment="center")
    if running:
        c1.button("Stop", key="ms_stop", on_click=_stop, help="Keeps the images scanned so far.")
    else:
        label = "Continue the scan" if state is not None and state.key == key and not state.finished else "Run"
        c1.button(label, key="ms_start", type="primary", on_click=_start, args=(key, total))
    if state is not None and state.key != key:
        c2.caption("The settings changed since the last run: run again to scan with these.")
        return None
    return state


def run(state: RunState, ds: CocoDataset, served: ServedModel, source: Source, config: ModelScanConfig) -> None:
    """Scan the images the session's run has not done yet, with a progress bar; a Stop click ends the run at the
    next image and keeps what is done."""
    if source.images is None:
        st.session_state[RUNNING] = False
        return
    bar = st.progress(state.done / max(1, state.total), text="Starting…")
    skip = {r["image_id"] for r in state.acc.rows}

    def progress(done: int, total: int) -> None:
        n = state.done
        bar.progress(n / max(1, state.total), text=f"Scanned {n:,} / {state.total:,} images…")

    for result in iter_scan(ds, source.images, served.model, config, skip=skip, progress=progress, notice=st.toast):
        state.acc.add(result)
    state.finished = True
    st.session_state[RUNNING] = False
    bar.empty()
    st.rerun()  # draw the Run button again in place of Stop


def results(state: RunState) -> ModelScan:
    """The run's results so far (rebuilt from the accumulated rows on each rerun)."""
    return state.acc.result()


PROBLEM_TEXT = {
    "missing_label": ("Confident detections on no box", "the object may be unlabelled", "score"),
    "not_found": ("Boxes no detection finds", "a wrong box, or a very hard object", "score"),
    "class_confusion": ("Boxes found as another class", "a wrong class, or a confusing one", "score"),
}


def problems_section(scan: ModelScan, ds: CocoDataset, source: Source, names: dict[int, str], key: str) -> None:
    """Per kind of likely label problem: how many, the table, and crops of the first ones (ranked)."""
    from ui.dataset import crops

    problems = scan.problems
    if not len(problems):
        st.success("No likely label problem at this score.")
        return
    kind = st.radio(
        "Kind", list(PROBLEM_TEXT), horizontal=True, key=kept("ms_problem"),
        format_func=lambda k: f"{PROBLEM_TEXT[k][0]} ({int((problems['kind'] == k).sum()):,})",
    )  # fmt: skip
    title, meaning, _ = PROBLEM_TEXT[kind]
    rows = problems[problems["kind"] == kind]
    # missing labels and confusions: most confident first; boxes not found: the ones the model came closest to last
    rows = rows.sort_values("score", ascending=kind == "not_found").reset_index(drop=True)
    st.caption(f"{title}: {meaning}. Ranked by the detection's score; the crops show the first 24.")
    items = []
    for r in rows.head(24).itertuples():
        label = names.get(int(r.label), str(r.label))
        other = f" as {names.get(int(r.other_label), r.other_label)}" if r.other_label >= 0 else ""
        items.append((r.file_name, (r.x1, r.y1, r.x2, r.y2), f"{label}{other} · score {r.score:.2f}"))
    if source.images is not None:
        shown = crops(f"{key}:{kind}", source.images, items)
        cols = st.columns(6)
        for k, (img, caption) in enumerate(shown):
            cols[k % 6].image(img, caption=caption, width="stretch")
    view = rows.assign(label=rows["label"].map(lambda c: names.get(int(c), c)))
    st.dataframe(view.drop(columns=["kind"]), hide_index=True, width="stretch")
    open_in_live(ds, source, rows["file_name"].tolist(), f"problems_{kind}")


LIVE_PAGE = "pages/4_Live_detections.py"


def open_in_live(ds: CocoDataset, source: Source, file_names: list[str], where: str) -> None:
    """Pick one of ``file_names`` and open it in Live detections with its ground truth (the model is the same: both
    pages share the model picker's choice)."""
    if source.images is None or not file_names:
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.selectbox("Image", list(dict.fromkeys(file_names)), key=f"ms_open_{where}")
    if not c2.button("Open in Live detections", key=f"ms_open_{where}_go", icon=":material/open_in_new:"):
        return
    index = ds.index_of(name)
    data = source.images.read(name)
    if index is None or data is None:
        st.error(f"{name} is not among the images ({source.images.description}).")
        return
    send_image(SentImage(data, name, ds, index, f"the model scan of {ds.name}"))
    st.switch_page(LIVE_PAGE)


def ap_tables(key: str, done: int, ds: CocoDataset, scan: ModelScan) -> tuple[dict[str, float], pd.DataFrame]:
    """COCO AP overall and per class of the scanned images, once per run (``key``) and number of images done."""
    from explorer.model_scan.ap import ap_report

    ids = summary.scanned(scan.images)["image_id"].tolist()
    return cached("ms_ap", f"{key}:{done}", lambda: ap_report(ds, scan.detections, ids), max_entries=4)


def class_section(key: str, done: int, ds: CocoDataset, scan: ModelScan, score_thresh: float) -> None:
    """AP and AP50, and the per-class table."""
    overall, per_class = ap_tables(key, done, ds, scan)
    m = st.columns(3)
    m[0].metric("AP", "n/a" if overall["AP"] != overall["AP"] else f"{overall['AP']:.3f}",
                help="pycocotools COCOeval, bbox, IoU 0.5:0.95, 100 detections per image")  # fmt: skip
    m[1].metric("AP50", "n/a" if overall["AP50"] != overall["AP50"] else f"{overall['AP50']:.3f}")
    table = summary.class_table(scan, ds, per_class, score_thresh)
    m[2].metric("Classes", f"{len(table):,}")
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={"AP": st.column_config.NumberColumn(format="%.3f"),
                       "AP50": st.column_config.NumberColumn(format="%.3f")},
    )  # fmt: skip
    st.caption(
        "Per class over the scanned images: its boxes (crowd left out), the anchors labeled positive for them, its "
        "detections at the score, COCO AP from the same COCOeval run, and its likely label problems. A class with "
        "many boxes but few positive anchors is an anchor problem (see Dataset diagnostics → Anchor fit); many "
        "positives but a low AP is a classifier or box problem; many problems points at its labels."
    )
