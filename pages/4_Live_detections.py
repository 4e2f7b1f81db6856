"""Live detections: run a RetinaNet on an image, look at its candidates, its dense scores and, with ground truth,
where its classification loss comes from."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.detection import evaluation, lossmaps
from explorer.detection import view as detection_view
from explorer.detection.outputs import filter_detections
from explorer.figures import detection as figs
from ui import detection as ui
from ui.common import download_buttons, kept, kept_file, kept_upload, page_link, page_setup, plot

page_setup("Live detections", "🎯")
st.caption(
    "Run torchvision's RetinaNet (or the demo model that ships with the app) on an image. Compare the candidates "
    "before NMS with the final detections, see the highest class probability over each level's anchor grid, and "
    "with ground truth split the per-anchor classification loss into easy negatives, hard negatives, positives "
    "and ignored anchors."
)
page_link("pages/5_Model_scan.py", "The same over a whole dataset: Model scan", ":material/analytics:")

# ----------------------------------------------------------------------------------------------- inputs
with st.sidebar:
    st.header("Model")
    request = ui.model_picker()
    st.header("Image")
    sent = st.session_state.get(ui.SENT)
    options = ["Sample scenes", "Upload"] + ([ui.SENT_SOURCE] if sent is not None else [])
    source = st.radio("Source", options, horizontal=True, key=kept("det_source"))
    scene_index = 0
    uploads, gt_file = [], None
    if source == ui.SENT_SOURCE:
        st.caption(f"**{ui.md_escape(sent.name)}**, sent from {sent.origin}, with its ground truth.")
    elif source == "Sample scenes":
        scene_index = st.selectbox(
            "Scene",
            range(detection_view.NUM_SAMPLE_SCENES),
            format_func=lambda i: f"held-out scene {i + 1}",
            key=kept("det_scene"),
        )
    else:
        uploads = kept_upload(
            "Images",
            key="det_images",
            multiple=True,
            type=["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"],
            help=ui.pixel_limit_help(),
        )
        gt_file = kept_file("Ground truth (COCO JSON, optional; file names must match)", key="det_gt", type=["json"])

served = ui.load_model(request)
loaded, model_error, weights_unavailable = served.model, served.message, served.unavailable
if model_error:
    if request.kind == "checkpoint" and request.checkpoint is None:
        st.info("Upload a checkpoint in the sidebar; until then the demo model runs.")
    elif weights_unavailable:
        st.warning(
            f"**The COCO weights are not available here: showing the demo model instead.** {ui.md_escape(model_error)}"
        )
    else:
        st.error(f"{ui.md_escape(model_error)}\n\nShowing the demo model instead.")
for notice in loaded.notices:
    st.warning(notice)

# ----------------------------------------------------------------------------------------------- the image
image, image_name, image_key, gt, crowd = None, "", "", None, None
# Why there is no ground truth, for the loss section (which needs it).
no_gt = "upload a COCO JSON whose image file names match your uploads in the sidebar, or pick a sample scene"
if source == ui.SENT_SOURCE and sent is not None:
    image_key, image_name = ui.digest(sent.data), sent.name
    try:
        image = ui.decode_upload(image_key, sent.data)
    except ValueError as err:
        st.error(f"{sent.name}: {err}")
    gt, crowd = sent.ground_truth()
    if mismatch := detection_view.category_mismatch(sent.dataset, gt[1], loaded.class_names):
        gt, crowd = None, None
        no_gt = f"the categories of {sent.dataset.name} are not this model's classes (see the warning above)"
        st.warning(f"{mismatch} Showing detections without ground truth; pick the model the scan ran.")
elif source == "Sample scenes":
    scene = detection_view.sample_scene(scene_index)
    image, image_name, image_key = scene.image, scene.name, f"scene-{scene_index}"
    if loaded.arch == "demo":
        gt = (scene.gt_boxes, scene.gt_labels)
    else:
        no_gt = "the sample scenes' ground truth uses the shape classes; it is compared only with the demo model"
        st.info(f"The {no_gt}.")
elif uploads:
    names = [u.name for u in uploads]
    pick = st.selectbox("Uploaded image", range(len(uploads)), format_func=lambda i: names[i], key="det_pick")
    data = uploads[pick].data
    image_key = ui.digest(data)
    try:
        image = ui.decode_upload(image_key, data)
    except ValueError as err:
        st.error(f"{names[pick]}: {err}")
    image_name = names[pick]
    if gt_file is not None and image is not None:
        try:
            gt_data = gt_file.data
            coco = ui.read_coco(ui.digest(gt_data), gt_data)
            index = coco.index_of(image_name)
            if index is not None:
                ann = coco.image_annotations(index)
                gt, crowd = (ann.boxes_xyxy, ann.category_ids), (ann.crowd_xyxy, ann.crowd_category_ids)
            if gt is None:
                no_gt = f"{gt_file.name} has no image named {image_name!r}"
                st.warning(
                    f"{gt_file.name} has no image named {image_name!r}: showing detections without ground truth."
                )
            elif mismatch := detection_view.category_mismatch(coco, gt[1], loaded.class_names):
                gt, crowd = None, None
                no_gt = f"the categories of {gt_file.name} are not this model's classes (see the warning above)"
                st.warning(f"{mismatch} Showing detections without ground truth; pick a model trained on them.")
        except ValueError as err:
            no_gt = f"{gt_file.name} cannot be read (see the error above)"
            st.error(f"{gt_file.name}: {err}")
else:
    st.info("Upload one or more images in the sidebar, or pick a sample scene.")

if image is None:
    st.stop()

# ----------------------------------------------------------------------------------------------- inference
try:
    result = ui.infer(served.key, image_key, loaded, image)
except ValueError as err:
    st.error(f"{image_name}: {err}")
    st.stop()
for notice in result.notices:
    st.warning(notice)

names = loaded.class_names
c1, c2, c3, c4 = st.columns([1.2, 1.6, 1, 1])
score_thresh = c1.slider("Score threshold", 0.05, 1.0, 0.3, 0.01, key=kept("det_score"))
present = sorted(set(result.candidates.labels.tolist()) | (set(gt[1].tolist()) if gt is not None else set()))
class_filter = c2.multiselect("Classes (empty = all)", present, format_func=loaded.label_name, key="det_classes")
max_dets = c3.number_input("Max detections", 1, 300, 100, 10, key=kept("det_max"))
view = c4.radio("Show", ["Final detections", "Candidates before NMS"], key=kept("det_view"))

classes = set(class_filter) if class_filter else None
shown_final = filter_detections(result.detections, score_thresh=score_thresh, classes=classes, max_detections=max_dets)
candidates = filter_detections(result.candidates, score_thresh=score_thresh, classes=classes)

st.write(
    f"**{image_name}** · {image.shape[1]}×{image.shape[0]} px · network input "
    f"{result.dense.input_size[1]}×{result.dense.input_size[0]} · {len(result.dense.levels):,} anchors · "
    f"model **{ui.MODEL_CHOICES[request.kind] if not model_error else ui.MODEL_CHOICES['demo']}** · {result.device}"
)

left, right = st.columns([3, 2])
with left:
    matching = None
    if view == "Final detections":
        gt_shown = gt
        if gt is not None and classes is not None:
            keep = np.isin(gt[1], list(classes))
            gt_shown = (gt[0][keep], gt[1][keep])
        if gt_shown is not None:
            crowd_args = {"crowd_boxes": crowd[0], "crowd_labels": crowd[1]} if crowd is not None else {}
            matching = evaluation.match_detections(shown_final, gt_shown[0], gt_shown[1], iou_thresh=0.5, **crowd_args)
        canvas = detection_view.draw_detections(
            image,
            shown_final,
            names,
            matching=matching,
            gt_boxes=gt_shown[0] if gt_shown is not None else None,
            crowd_boxes=crowd[0] if crowd is not None else None,
        )
        caption = f"{len(shown_final)} detections after NMS"
        if matching is not None:
            counts = matching.counts()
            caption += (
                f" · green TP {counts['true positives']}, red FP {counts['false positives']}, "
                f"yellow missed {counts['missed']} (IoU 0.5, same class)"
            )
            if counts.get("on crowd (ignored)"):
                caption += f" · grey on a crowd region {counts['on crowd (ignored)']} (ignored, as COCOeval does)"
        table = detection_view.detections_table(shown_final, names, matching)
    else:
        canvas = detection_view.draw_detections(
            image, candidates, names, color_by="level", show_labels=len(candidates) <= 60, thickness=1
        )
        caption = (
            f"{len(candidates)} candidates before NMS (score > 0.05, top 1,000 per level, then your threshold) · "
            "colour = pyramid level (P3 blue, P4 orange, P5 green, P6 pink, P7 red)"
        )
        table = detection_view.detections_table(candidates, names)
    st.image(canvas, caption=caption, width="stretch")
with right:
    plot(figs.timings_figure(result.timings_ms, device=result.device), key="det_timings")
    st.dataframe(table, height=260, hide_index=True)
    download_buttons(name=f"detections_{image_name}", df=table, key="det_table")

maps = result.dense.max_prob_maps()
heat = figs.level_heatmaps_figure(maps)
plot(heat, key="det_heat", theme=None)

# ----------------------------------------------------------------------------------------------- loss maps
st.subheader("Where the loss comes from")
if gt is None:
    st.info(f"The loss maps need ground truth: {no_gt}.")
    st.stop()

g1, g2, g3 = st.columns(3)
alpha = g1.slider("Focal α (-1 = off)", -1.0, 1.0, 0.25, 0.05, key=kept("det_alpha"))
gamma = g2.slider("Focal γ", 0.0, 5.0, 2.0, 0.1, key=kept("det_gamma"))
kind = g3.selectbox(
    "Loss shown in the maps",
    list(lossmaps.LOSS_KINDS),
    index=1,
    format_func=lossmaps.LOSS_KINDS.get,
    key=kept("det_loss_kind"),
)
try:
    breakdown = ui.loss_breakdown(served.key, image_key, result.dense, gt[0], gt[1], alpha=alpha, gamma=gamma)
except ValueError as err:
    st.error(f"The ground truth does not fit this model: {err}")
    st.stop()

shares = breakdown.shares()
st.markdown(
    f"Image loss normalised by max(1, positives) = {breakdown.normalizer:.0f}: "
    + ", ".join(f"{lossmaps.LOSS_KINDS[k]} **{v:.4g}**" for k, v in breakdown.totals().items())
)
s1, s2 = st.columns([3, 2])
with s1:
    plot(figs.loss_share_figure(shares, list(lossmaps.LOSS_KINDS.values())), key="det_shares")
with s2:
    st.dataframe(
        # Shares as text, so that the ignored anchors' share reads "—" (they are not counted) rather than "None".
        shares.assign(
            **{c: shares[c].map(lambda v: "—" if v != v else f"{v:.1%}") for c in shares if c.endswith("share")}
        ),
        hide_index=True,
        column_config={
            c: st.column_config.TextColumn(c, help="of the counted loss; ignored anchors are not counted")
            if c.endswith("share")
            else st.column_config.NumberColumn(c, format="%.4g")
            for c in shares.columns
            if c.endswith(("share", "loss"))
        },
    )
    download_buttons(name=f"loss_shares_{image_name}", df=shares, key="det_shares_dl")

groups = st.multiselect(
    "Groups in the maps", list(figs.GROUP_COLORS), default=list(figs.GROUP_COLORS), key=kept("det_groups")
)
level_maps = lossmaps.level_loss_maps(result.dense, breakdown, kind)
loss_fig = figs.loss_maps_figure(level_maps, groups, loss_name=lossmaps.LOSS_KINDS[kind])
plot(loss_fig, key="det_lossmaps", theme=None)
st.caption(
    "Anchors are labelled by max-IoU assignment (IoU ≥ 0.5 positive, plus each GT's best anchors; [0.4, 0.5) "
    "ignored; hard negative 0 < IoU < 0.4; easy negative no overlap). Ignored anchors are drawn with the loss they "
    "would have as negatives but are not counted, as in torchvision."
)
