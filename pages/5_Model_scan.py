"""Model scan: a detector over a whole dataset, where its classification loss goes, easy / hard by the classifier,
score-IoU consistency and likely label problems."""

from __future__ import annotations

import streamlit as st

from explorer.figures import model_scan as figs
from explorer.model_scan import summary
from explorer.model_scan.image_stats import COUNTED
from explorer.model_scan.run import check_categories
from ui import detection as ui_detection
from ui import model_scan as ui
from ui import sources
from ui.common import download_buttons, kept, page_setup, plot

page_setup("Model scan", "📊")
st.caption(
    "Run a detector over a dataset and see where **its** classification loss goes: the loss exactly as "
    "torchvision trains RetinaNet (focal, alpha 0.25, gamma 2, normalized by the image's positives), split by "
    "anchor group, by pyramid level and by the classifier's own p_t, beside the IoU proxy of Dataset diagnostics; "
    "how well its scores follow the IoU of its boxes; and the boxes that look mislabelled."
)

with st.sidebar:
    st.header("Model")
    request = ui_detection.model_picker()
served = ui_detection.load_model(request)
if served.message:
    (st.info if served.unavailable else st.warning)(f"{served.message} The demo model runs instead.")
source = sources.source_widget()
if source is None:
    st.stop()
try:
    ds = ui.dataset(source)
    check_categories(ds, served.model)
except ValueError as err:
    st.error(f"{source.name}: {err}")
    st.stop()
if source.images is None:
    st.warning(
        "The model needs the images: upload a zip of them beside the JSON, a dataset zip, or pick the images folder."
    )
    st.stop()
with st.sidebar:
    st.header("Scan")
    config = ui.config_widgets(ds.num_images)

key = ui.run_key(source, served, config)
state = ui.controls(key, min(config.limit or ds.num_images, ds.num_images))
if state is not None and st.session_state.get(ui.RUNNING):
    ui.run(state, ds, served, source, config)
if state is None or state.done == 0:
    st.info(f"{ds.num_images:,} images in {source.name}; press Run to scan {config.limit:,} of them.")
    st.stop()

scan = ui.results(state)
ok = summary.scanned(scan.images)
n_err = len(scan.images) - len(ok)
st.caption(
    f"{state.done:,} of {state.total:,} images scanned" + ("" if state.finished else " (stopped: press Continue)")
    + (f" · {n_err:,} could not be read (see the table)" if n_err else "")
)  # fmt: skip
if not len(ok):
    st.stop()
m = st.columns(5)
m[0].metric("Focal loss / image", f"{ok['focal_loss'].mean():.4f}", help="torchvision's compute_loss, mean")
m[1].metric("CE loss / image", f"{ok['ce_loss'].mean():.3f}", help="the same with plain binary cross-entropy")
m[2].metric("Box loss / image", f"{ok['box_loss'].mean():.4f}", help="the regression head's loss type")
m[3].metric("TP / FP / FN", f"{int(ok['tp'].sum()):,} / {int(ok['fp'].sum()):,} / {int(ok['fn'].sum()):,}",
            help=f"At score ≥ {config.score_thresh:g}, IoU 0.5, same class; crowd regions ignored.")  # fmt: skip
m[4].metric("Positives / image", f"{ok['positives'].mean():.1f}")

tabs = st.tabs(
    ["Where the loss goes", "Easy / hard by p_t", "Images", "Classes", "Score vs IoU", "Label problems", "Assigners",
     "Export"],
    key="ms_tab", on_change="rerun",  # the chosen tab stays chosen when a widget in it reruns the page
)  # fmt: skip
with tabs[0]:
    c1, c2 = st.columns(2)
    alpha = c1.slider("alpha", 0.0, 1.0, 0.25, 0.05, key=kept("ms_alpha"))
    gamma = c2.slider("gamma", 0.0, 5.0, 2.0, 0.1, key=kept("ms_gamma"))
    ce, focal = summary.ce_shares(scan.images), summary.focal_shares(scan, alpha=alpha, gamma=gamma)
    plot(figs.loss_shares_figure(ce, focal, alpha=alpha, gamma=gamma), key="ms_shares_chart")
    worst = float((focal["bound"] / focal["loss"].where(focal["loss"] > 0)).max())
    st.caption(
        "Without the model running again: any alpha and gamma come from binned statistics of every (anchor, class) "
        f"term, within {worst:.1e} relative of the exact sums. Under CE the easy negatives carry most of the loss; "
        "focal loss hands it to the positives and the hard negatives. If easy negatives still dominate under "
        "your gamma, raise it; if positives carry almost everything, the negatives barely train."
    )
    levels = summary.level_table(scan.images)
    plot(figs.level_figure(levels), key="ms_levels_chart")
    st.dataframe(levels, hide_index=True, width="stretch")
with tabs[1]:
    table = summary.pt_table(scan.images, config.losses.pt_thresh)
    pt_col = next(c for c in table.columns if c.startswith("by p_t"))
    plot(figs.pt_figure(table, pt_col), key="ms_pt_chart")
    gap = summary.proxy_disagreement(scan.images)
    st.caption(
        f"The IoU proxy calls every anchor with 0 < IoU < 0.4 a hard negative; the model finds "
        f"**{summary.percent(gap['iou_hard_but_easy'])}** of them easy (p_t ≥ {config.losses.pt_thresh:g}), and "
        f"{summary.percent(gap['iou_easy_but_hard'])} of the IoU-easy negatives hard. Hard by p_t is what focal "
        "loss weights."
    )
    shown = table.style.format({"anchors": "{:,}", "focal share": summary.percent, "CE share": summary.percent})
    st.dataframe(shown, hide_index=True, width="stretch")
with tabs[2]:
    by = st.radio("Hardest by", ["focal_loss", "ce_loss", "box_loss"], horizontal=True, key=kept("ms_by"))
    plot(figs.loss_histogram(ok, by), key="ms_hist_chart")
    hardest = summary.hardest(scan.images, by)
    st.dataframe(hardest, hide_index=True, width="stretch")
    ui.open_in_live(ds, source, hardest["file_name"].tolist(), "hardest")
    if n_err:
        st.dataframe(scan.images.loc[scan.images["error"] != "", ["file_name", "error"]], hide_index=True)
with tabs[3]:
    ui.class_section(key, state.done, ds, scan, config.score_thresh)
with tabs[4]:
    names = {int(c): n for c, n in zip(ds.category_ids.tolist(), ds.category_names, strict=True)}
    present = sorted({c for c, _ in scan.histograms})
    c1, c2 = st.columns(2)
    cls = c1.selectbox("Class", [None, *present], format_func=lambda c: "all" if c is None else names.get(c, c),
                       key=kept("ms_cls"))  # fmt: skip
    size = c2.selectbox("Box size", [None, 0, 1, 2], key=kept("ms_size"),
                        format_func=lambda s: "all" if s is None else summary.SIZE_NAMES[s])  # fmt: skip
    density = summary.score_iou_density(scan, category=cls, size=size)
    plot(figs.score_iou_figure(density), key="ms_density_chart", theme=None)
    counts = summary.consistency_counts(scan.images)
    st.caption(
        "Each positive anchor: the score of its box's class against the IoU of the box it predicts. A detector "
        "ranks by score, so positives far below the diagonal (good box, low score) are lost to NMS and thresholds: "
        + ", ".join(f"{k}: **{v:,}**" for k, v in counts.items())
        + ". QFL and Varifocal train the score to be the IoU."
    )
with tabs[5]:
    ui.problems_section(scan, ds, source, names, key)
with tabs[6]:
    compared = summary.assigner_table(scan.images)
    if compared.empty:
        st.info("Pick assigners under 'Also compare assigners' in the sidebar and run again to compare them here.")
    else:
        plot(figs.assigners_figure(compared), key="ms_assigners_chart")
        st.dataframe(compared.style.format({"positives per box": "{:.1f}", "share with no positive": summary.percent}),
                     hide_index=True, width="stretch")  # fmt: skip
        st.caption("Every assigner on the same anchors and the same model outputs, image by image; the per-image "
                   "columns are in the export.")  # fmt: skip
with tabs[7]:
    download_buttons(name="model_scan_images", df=scan.images, key="ms_dl_images", parquet=True)
    download_buttons(name="model_scan_problems", df=scan.problems, key="ms_dl_problems")
    st.caption(f"The CLI writes the same rows: `python -m explorer model-scan ANNOTATIONS --images DIR --model demo "
               f"--out stats.parquet` (resumable). Groups: {', '.join(g.display for g in COUNTED)}.")  # fmt: skip
