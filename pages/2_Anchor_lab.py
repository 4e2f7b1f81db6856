"""Anchor lab: RetinaNet anchors and IoU-threshold labeling on an image, exact to torchvision."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.anchors import lab
from explorer.anchors.counts import count_conventions, explain_anchor_count
from explorer.figures import anchors as figs
from ui import anchors as ui
from ui import assigners as assigners_ui
from ui.common import download_buttons, kept, page_setup, pixel_limit_help, plot

page_setup("Anchor lab", "⚓")

GT_FORMATS = {c: "{:.1f}" for c in ("x1", "y1", "x2", "y2", "size √(wh)")} | {
    "aspect h/w": "{:.2f}",
    "best IoU": "{:.4f}",
    "ATSS threshold": "{:.4f}",
}

# Names of explorer.overlay.LEVEL_COLORS, in order (level index 0, 1, ...).
LEVEL_COLOR_NAMES = ("blue", "orange", "green", "pink", "red", "light blue", "yellow")
# What matters first at a location (IoU, label, GT) before the geometry; the narrow column scrolls sideways.
LOCATION_COLUMNS = (
    "level", "shape", "w", "h", "max IoU", "label", "matched GT", "best GT", "size √(wh)", "ratio h/w", "centre",
    "anchor",
)  # fmt: skip

st.markdown(
    "Which anchors become positives, ignored, hard and easy negatives for the boxes of one image, shown on the "
    "image **as the network sees it** (resized, padded). With the torchvision convention the anchors are exactly "
    "those of `torchvision`'s `AnchorGenerator` and the labels those of its `Matcher`."
)

with st.sidebar:
    config = ui.anchor_config_widgets()
    params = ui.assigner_widgets()

st.subheader("Input")
c_img, c_box = st.columns(2)
with c_img:
    inp = ui.image_input_widget()
if inp is None:
    st.caption(pixel_limit_help())
    st.stop()
with c_box:
    gts = ui.boxes_input_widget(inp)

if gts.warnings:
    st.warning(f"{len(gts.warnings)} box(es) or line(s) skipped:\n\n" + "\n".join(f"- {n}" for n in gts.warnings[:30]))
if gts.notes:
    st.info("\n".join(f"- {n}" for n in gts.notes[:30]))

h0, w0 = inp.image.shape[:2]
try:
    scene = ui.anchor_scene(h0, w0, config)
except ValueError as err:
    st.error(f"Cannot label {inp.name}: {err}")
    st.stop()
boxes_in = scene.to_input(gts.boxes)
bkey = ui.boxes_key(boxes_in)
sparse = ui.sparse_iou(h0, w0, config, bkey, boxes_in)
result = lab.label_anchors(scene, boxes_in, sparse, **params)
img_in = lab.crowd_image(
    ui.input_image(inp.key, scene.resized_hw, scene.padded_hw, inp.image), scene.to_input(gts.crowd)
)
pos_thr = params["pos_thresh"]
stats = lab.summary(result, pos_thr)

st.caption(
    f"**{inp.name}**: {w0}×{h0} px → network input {scene.resized_hw[1]}×{scene.resized_hw[0]} "
    f"(scale {scene.scale:.4f}), padded to {scene.padded_hw[1]}×{scene.padded_hw[0]}; "
    f"{len(gts)} GT box(es); {config.convention} convention; "
    + ("ATSS (no ignore band)" if params["assigner"] == "atss" else f"positive ≥ {pos_thr:.2f}, negative < "
       f"{params['neg_thresh']:.2f}, low-quality matches {'on' if params['low_quality'] else 'off'}")
)  # fmt: skip
m = st.columns(4) + st.columns(4)
m[0].metric("Anchors", f"{stats['anchors']:,}")
m[1].metric("Positive", f"{stats['positive']:,}")
m[2].metric("Ignored", f"{stats['ignored']:,}")
m[3].metric("Hard negative", f"{stats['hard negative']:,}", help="0 < max IoU < negative threshold")
m[4].metric("Easy negative", f"{stats['easy negative']:,}", help="max IoU exactly 0: overlaps no GT at all")
m[5].metric(
    "Best possible recall",
    "—" if np.isnan(stats["best possible recall"]) else f"{stats['best possible recall']:.1%}",
    help=f"Share of GTs with at least one anchor at IoU ≥ {pos_thr:.2f}",
)
m[6].metric("Positives per GT", "—" if not len(gts) else f"{stats['mean positives per GT']:.1f}")
m[7].metric("GTs with no positive", stats["unmatched GTs"])

with st.expander(f"Why {stats['anchors']:,} anchors and not the 'floor' count?"):
    rh, rw = scene.resized_hw
    st.markdown(explain_anchor_count(rh, rw, config))
    st.table(
        [{"convention": k, "anchors": f"{v:,}"} for k, v in count_conventions(rh, rw, config).items()],
    )
    st.caption(
        "For the default 800×800 input this is 120,087 (grids 100, 50, 25, 13, 7) against the 119,745 "
        "(100, 50, 25, 12, 6) that tutorials quote."
    )

legend = ", ".join(f"{n} {c}" for n, c in zip(scene.level_names, LEVEL_COLOR_NAMES, strict=False))

# Lazy tabs: only the open tab's content runs, so a rerun after a threshold change stays fast.
tab_img, tab_loc, tab_lvl, tab_gt, tab_sweep, tab_cmp = st.tabs(
    ["Image", "Anchors at a location", "Per level", "Per GT", "Threshold sweep", "Assigners side by side"],
    key="al_tab",
    on_change="rerun",
)

if tab_img.open:
    with tab_img:
        # The view picker gets a row of its own: beside the other controls its fourth option was cut off.
        view = st.segmented_control(
            "View",
            ["GT boxes", "Positive anchors", "Ignored anchors", "Hard-negative density"],
            default="Positive anchors",
            required=True,
            key=kept("al_view"),
        )
        c1, c2, c3 = st.columns([3, 2, 2])
        anchor_view = view in ("Positive anchors", "Ignored anchors")  # the other views draw no anchors
        show_levels = c1.multiselect(
            "Levels", list(range(len(scene.grids))), default=list(range(len(scene.grids))),
            format_func=lambda i: scene.level_names[i], key="al_show_levels", disabled=not anchor_view,
        )  # fmt: skip
        color_by = c3.radio("Colour positives by", ["gt", "level"], horizontal=True, key=kept("al_colour"),
                            format_func={"gt": "matched GT", "level": "level"}.get,
                            disabled=view != "Positive anchors")  # fmt: skip
        show_ignored = c3.toggle("Show ignored anchors", value=True, key=kept("al_show_ign"),
                                 disabled=view != "Positive anchors")  # fmt: skip
        per_level = c2.toggle("One image per level", value=False, key=kept("al_per_level"), disabled=not anchor_view)
        if per_level and anchor_view:
            key = "ignored" if view == "Ignored anchors" else "positive"
            per_lvl = lab.per_level_table(scene, result)[key].tolist()
            cols = st.columns(min(3, max(1, len(show_levels))))
            for k, li in enumerate(show_levels):
                one = (
                    lab.ignored_image(img_in, scene, boxes_in, result, levels=[li])
                    if key == "ignored"
                    else lab.positives_image(img_in, scene, boxes_in, result, levels=[li], color_by=color_by)
                )
                cols[k % len(cols)].image(
                    one,
                    caption=f"{scene.level_names[li]}: {per_lvl[li]:,} {key}",
                    width="stretch",
                    output_format="JPEG",
                )
            shown, caption = None, ""
        elif view == "GT boxes":
            shown = lab.gt_image(img_in, boxes_in, gts.classes, result)
            caption = "GT boxes; those without any positive anchor are highlighted in red."
        elif view == "Hard-negative density":
            shown = lab.hard_negative_image(img_in, scene, boxes_in, result)
            band = "0 < IoU" if params["assigner"] == "atss" else f"0 < IoU < {params['neg_thresh']:.2f}"
            caption = (
                f"Density of the {stats['hard negative']:,} hard-negative anchor centres ({band}). "
                f"The other {stats['easy negative']:,} negatives overlap no box at all."
            )
        elif view == "Ignored anchors":
            shown = lab.ignored_image(img_in, scene, boxes_in, result, levels=show_levels)
            caption = (
                f"{stats['ignored']:,} ignored anchors ({params['neg_thresh']:.2f} ≤ IoU < {pos_thr:.2f}), coloured "
                "like the GT they overlap most: they get no classification loss."
            )
        else:
            shown = lab.positives_image(
                img_in, scene, boxes_in, result, levels=show_levels, color_by=color_by, show_ignored=show_ignored
            )
            caption = (
                f"{stats['positive']:,} positive anchors coloured by "
                + ("the GT they match" if color_by == "gt" else f"level ({legend})")
                + (f"; {stats['ignored']:,} ignored anchors in yellow" if show_ignored else "")
                + ". The dark border is the padding."
            )
        if shown is not None:
            st.image(shown, caption=caption, width="stretch", output_format="JPEG")

if tab_loc.open:
    with tab_loc:
        ph, pw = scene.padded_hw
        default_xy = lab.default_location(scene, boxes_in)
        c1, c2 = st.columns(2)
        x = c1.slider("x (input pixels)", 0, pw - 1, int(min(pw - 1, default_xy[0])), key=f"al_x_{inp.key}")
        y = c2.slider("y (input pixels)", 0, ph - 1, int(min(ph - 1, default_xy[1])), key=f"al_y_{inp.key}")
        loc = lab.location_table(scene, x, y, boxes_in, result)
        c3, c4 = st.columns([3, 2])
        c3.image(lab.location_image(img_in, scene, x, y, boxes_in), width="stretch", output_format="JPEG",
                 caption=f"Every anchor at the nearest cell of each level, coloured by level ({legend}); "
                 "white: the GT boxes.")  # fmt: skip
        c4.dataframe(loc, hide_index=True, width="stretch", height=520, column_order=LOCATION_COLUMNS)
        download_buttons(name="anchors_at_location", df=loc, key="al_dl_loc")

if tab_lvl.open:
    with tab_lvl:
        lvl = lab.per_level_table(scene, result)
        st.dataframe(lvl, hide_index=True, width="stretch")
        c1, c2 = st.columns(2)
        norm = c1.toggle("Show shares (%)", value=False, key=kept("al_norm"))
        logy = c2.toggle("Log count axis", value=True, key=kept("al_logy"), disabled=norm)
        counts = {k: lvl[k].to_numpy()[:-1] for k in ("positive", "ignored", "hard negative", "easy negative")}
        fig_lvl = figs.level_label_bar(counts, scene.level_names, normalize=norm, log_y=logy)
        plot(fig_lvl, key="al_fig_lvl")
        download_buttons(name="anchors_per_level", df=lvl, fig=fig_lvl, key="al_dl_lvl")
        atss = params["assigner"] == "atss"  # no fixed IoU thresholds: no threshold lines
        plot(
            figs.iou_hist_figure(
                result.max_iou, pos_thresh=None if atss else pos_thr, neg_thresh=None if atss else params["neg_thresh"]
            ),
            key="al_fig_iou",
        )

if tab_gt.open:
    with tab_gt:
        gt_df = lab.per_gt_table(scene, boxes_in, gts.classes, result)
        if len(gt_df) == 0:
            st.info("No GT boxes: every anchor is an easy negative. Add boxes in the table above.")
        else:
            bad = int(result.no_positive.sum())
            if bad:
                st.warning(f"{bad} GT(s) have no positive anchor at all (red in the image).")
            st.dataframe(
                gt_df.style.format({k: v for k, v in GT_FORMATS.items() if k in gt_df.columns}).apply(
                    lambda r: ["background-color: rgba(230,0,0,0.25)" if r["status"] == "no positive" else ""] * len(r),
                    axis=1,
                ),
                hide_index=True,
                width="stretch",
            )
            download_buttons(name="gt_anchor_stats", df=gt_df, key="al_dl_gt")
            c1, c2 = st.columns(2)
            c1.image(lab.gt_image(img_in, boxes_in, gts.classes, result), width="stretch", output_format="JPEG",
                     caption="All GTs; red: no positive anchor.")  # fmt: skip
            with c2:
                plot(
                    figs.positives_per_gt_figure(
                        lab.box_sizes(boxes_in), result.num_positive, result.best_level, scene.level_names
                    ),
                    key="al_fig_gt",
                )
            worst = int(np.argmin(result.num_positive))
            focus = st.selectbox(
                "Focus on one GT", list(range(len(boxes_in))), index=worst, key=f"al_focus_{inp.key}",
                format_func=lambda g: f"GT {g} ({gts.classes[g]}): {result.num_positive[g]} positives, "
                f"best IoU {result.best_iou[g]:.3f}",
            )  # fmt: skip
            st.image(
                lab.gt_focus_image(img_in, scene, boxes_in, result, focus),
                caption="Cyan: this GT (red when it has no positive); green: its positive anchors; yellow: ignored "
                "anchors it overlaps most; white: its best anchor; grey: the other GTs.",
                width="stretch",
                output_format="JPEG",
            )

if tab_sweep.open:
    with tab_sweep:
        if params["assigner"] == "atss":
            st.info("The sweep moves the max-IoU positive threshold; it is shown for max-IoU labeling.")
        if len(boxes_in) == 0:
            st.info("No GT boxes to sweep over.")
        else:
            sw = ui.sweep(
                h0, w0, config, bkey, params["neg_thresh"], params["low_quality"], params["semantics"], boxes_in
            )
            plot(figs.threshold_sweep_figure(sw, current=pos_thr), key="al_fig_sweep")
            sw_df = lab.sweep_table(sw)
            st.dataframe(sw_df, hide_index=True, width="stretch")
            download_buttons(name="threshold_sweep", df=sw_df, key="al_dl_sweep")

if tab_cmp.open:
    with tab_cmp:
        assigners_ui.section(assigners_ui.served_model(), inp.key, inp.image, gts)
