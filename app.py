"""FocalScope home page: what the tool shows, why, and where to go."""

from __future__ import annotations

import streamlit as st

from explorer.labels import ratio_text
from explorer.settings import limits
from ui import common

common.page_setup("FocalScope", "🔭")
# The first visit after a start loads PyTorch and may generate the sample dataset (tens of seconds on 2 cores):
# the title and this spinner show at once instead of a blank page.
with st.spinner("Starting FocalScope: loading PyTorch and the built-in sample dataset (first visit only)…"):
    from ui import home

    common.sample_dataset_path()
st.markdown(
    "**See where a dense detector's training signal goes — before you train.** "
    "A one-stage detector such as RetinaNet scores every anchor of every image; a handful are positives, and the "
    "easy negatives, each with a tiny loss, still outnumber them by three to four orders of magnitude. "
    "Focal loss, QFL/DFL, Varifocal and Rectified IoU losses each reshape who gets the gradient. "
    "FocalScope makes that visible and measurable on your own data."
)

facts = home.anchor_facts()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Anchors 800×800", f"{facts['anchors_800']:,}", help="torchvision RetinaNet: 5 levels × 9 anchors")
c2.metric("Anchors 800×1333", f"{facts['anchors_1333']:,}", help="COCO's usual input size")
c3.metric(
    "Positives, scene 1",
    f"{facts['positives']:,}",
    help=f"IoU ≥ 0.5 (plus low-quality matches) for the {facts['boxes']} boxes of sample scene 1",
)
c4.metric("Easy negatives", f"{facts['easy_share']:.1%}", help="IoU = 0 with every box: share of that scene's anchors")
st.caption(
    f"Sample scene 1 ({facts['image_hw'][1]}×{facts['image_hw'][0]}, resized to {facts['resized_hw'][1]}×"
    f"{facts['resized_hw'][0]}) has {facts['boxes']} boxes and {facts['anchors']:,} anchors: "
    f"{facts['positives']:,} positives, {facts['ignored']:,} ignored, {facts['hard']:,} hard negatives and "
    f"{facts['easy']:,} easy negatives — about {ratio_text(facts['neg_per_pos'])} negatives per positive."
)

st.subheader("Pages")
descriptions = {
    "Loss lab": "Loss and gradient curves for CE, α-CE, focal, FL*, QFL, DFL, Varifocal, IoU-family and RIoU "
    "losses with live parameters, and the share of a batch's loss and gradient each kind of sample gets.",
    "Anchor lab": "RetinaNet anchors and IoU-threshold labeling on your own image and boxes: positives, ignored, "
    "hard and easy negatives, per level and per box — exact to torchvision.",
    "Dataset diagnostics": "Per-image positive / ignored / hard / easy statistics over a whole dataset (COCO, "
    "YOLO or Pascal VOC), "
    "per class, level and size; validation problems; the boxes no anchor catches.",
    "Live detections": "A RetinaNet on the GPU (CPU fallback) with overlays, candidates before NMS, "
    "per-level score maps and per-anchor loss maps from the model's dense outputs.",
    "Model scan": "A detector over a whole dataset: where its loss goes (exactly as torchvision trains it), easy "
    "and hard by the classifier's p_t against the IoU proxy, score-IoU consistency, likely label problems.",
}
pages = common.existing_pages()
cols = [c for _ in range(0, len(pages), 2) for c in st.columns(2)]  # two cards a row: four cut titles at 800 px
for col, (path, title, icon) in zip(cols, pages, strict=False):
    with col, st.container(border=True):
        st.page_link(path, label=f"**{title}**", icon=icon)
        st.caption(descriptions[title])

st.subheader("Sample data")
info = home.sample_info()
left, right = st.columns([2, 3])
with left:
    st.markdown(
        f"The built-in **synthetic shapes** dataset: {info['images']} images ({info['size']}), "
        f"{info['boxes']:,} boxes in {info['classes']} long-tailed classes, {info['small_share']:.0%} of them "
        "small (COCO rule: area < 32²). It is generated from a fixed seed by `explorer/synthetic.py`, identical on "
        "every machine."
    )
    if not limits().hosted:  # a hosted server does not show its file system
        st.caption(f"Cached at `{info['path']}`")
    st.dataframe(info["per_class"], hide_index=True, width="stretch")
with right:
    st.image(info["preview"], caption="Sample scenes 1–2 with their boxes", width="stretch")

st.subheader("Compute")
st.markdown(f"Device: **{common.device_label()}**")
