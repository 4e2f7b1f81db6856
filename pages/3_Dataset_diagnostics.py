"""Dataset diagnostics: the imbalance a RetinaNet sees over a whole dataset (COCO, YOLO, VOC), image by image."""

from __future__ import annotations

import streamlit as st

from explorer.dataset.image_stores import coverage_message
from explorer.dataset.view import filter_images, image_boxes, no_positive_rows
from explorer.figures import dataset as figs
from explorer.labels import ratio_text
from ui import anchor_fit, sources
from ui import dataset as ui
from ui.common import kept, page_link, page_setup, plot

page_setup("Dataset diagnostics", "📊")

st.markdown(
    "Every image of a dataset (COCO, YOLO or Pascal VOC) labeled as torchvision's RetinaNet labels it during "
    "training: resized, its anchors matched to the boxes by IoU (**positive** ≥ pos, **ignored** in between, "
    "**hard negative** 0 < IoU < neg, **easy negative** IoU = 0, low-quality matches on). The counts equal "
    "torchvision's `AnchorGenerator` + `box_iou` + `Matcher` exactly; crowd boxes (and VOC difficult objects) are "
    "left out of matching."
)
page_link(
    "pages/5_Model_scan.py",
    "Easy/hard by a real detector's p_t: the Model scan",
    ":material/analytics:",
)

with st.sidebar:
    config = ui.scan_config_widgets()

source = sources.source_widget()
if source is None:
    st.stop()
try:
    ds, result = ui.load_and_scan(source, config)
except ValueError as exc:
    st.error(f"{source.name}: {exc}")
    st.stop()

s = result.summary()
st.subheader(f"{ds.name}")
st.caption(sources.read_summary(source, ds))
m = st.columns(4)
m[0].metric("Images", f"{s['images']:,}")
m[1].metric("Boxes", f"{s['boxes']:,}", help=f"{s['crowd_boxes']:,} crowd boxes are not matched")
m[2].metric("Anchors", f"{s['anchors']:,}")
m[3].metric("Boxes with no positive", f"{s['boxes_no_positive']:,}", help="no anchor is labeled positive for them")
m = st.columns(4)
m[0].metric("Positive", f"{100 * s['positive_share']:.3f} %", help=f"{s['positives']:,} anchors")
m[1].metric("Ignored", f"{100 * s['ignored_share']:.2f} %")
m[2].metric("Hard negative", f"{100 * s['hard_negative_share']:.1f} %", help="0 < IoU < negative threshold")
m[3].metric("Easy negative", f"{100 * s['easy_negative_share']:.1f} %", help="IoU = 0 with every box")
st.caption(
    f"{ratio_text(s['neg_per_pos'])} negatives per positive · {s['mean_pos_per_box']:.1f} positives per box · "
    f"{s['boxes_low_quality_only']:,} boxes positive only through a low-quality match · "
    f"{s['images_without_boxes']:,} images without boxes · scanned in {result.seconds:.2f} s ({result.path}"
    + (f", {result.reference_images} image(s) on the reference path" if result.reference_images else "")
    + ")"
)
if source.images is not None and (missing := coverage_message(source.images, ds.file_names)):
    st.warning(missing)
n_err = ds.counts.get("errors", 0)
if n_err:
    st.warning(f"{n_err:,} record(s) could not be used; see the Validation tab.")

tabs = st.tabs(
    ["Overview", "Classes", "Levels and sizes", "Images", "Boxes without a positive", "Anchor fit", "Validation",
     "Export"],
    key="dd_tab", on_change="rerun",  # the chosen tab stays chosen when a button in it reruns the page
)  # fmt: skip

with tabs[0]:
    c1, c2 = st.columns(2)
    all_boxes = not result.boxes_path  # a streamed box table keeps only the boxes without a positive in memory
    with c1:
        plot(figs.positives_per_image(result.images), key="dd_f_pos")
        plot(figs.boxes_per_image(result.images), key="dd_f_boxes")
        if all_boxes:
            plot(figs.aspect_ratios(result.boxes), key="dd_f_aspect")
    with c2:
        plot(figs.pos_neg_ratio(result.images), key="dd_f_ratio")
        if all_boxes:
            plot(figs.box_sizes(result.boxes), key="dd_f_sizes")
            plot(figs.centre_heatmap(result.boxes), key="dd_f_centres")
    if not all_boxes:
        st.caption(
            f"{int(result.summary()['boxes']):,} boxes: the per-box table was written to a Parquet file on the server "
            "instead of being held in memory, so the per-box figures are left out; the per-image, per-class, "
            "per-level and per-size figures are aggregated on the server."
        )

with tabs[1]:
    per_class = result.per_class()
    plot(figs.class_counts(per_class), key="dd_f_classes")
    st.caption(
        f"Tags compare a class's share of all positive anchors with a uniform share: under-represented below "
        f"{config.under:g}×, over-represented above {config.over:g}×."
    )
    st.dataframe(
        per_class,
        hide_index=True,
        width="stretch",
        column_config={
            "positives_per_instance": st.column_config.NumberColumn("positives / box", format="%.1f"),
            "no_positive_share": st.column_config.NumberColumn("no positive", format="percent"),
            "low_quality_only_share": st.column_config.NumberColumn("low-quality only", format="percent"),
            "positive_share": st.column_config.NumberColumn("share of positives", format="percent"),
            "representation": st.column_config.NumberColumn("× uniform", format="%.2f"),
            "mean_best_iou": st.column_config.NumberColumn("mean best IoU", format="%.3f"),
        },
    )

with tabs[2]:
    levels = result.per_level()
    c1, c2 = st.columns(2)
    with c1:
        plot(figs.positives_per_level(levels), key="dd_f_lvpos")
    with c2:
        plot(figs.level_labels(levels), key="dd_f_lvlab")
    st.dataframe(levels, hide_index=True, width="stretch")
    per_size = result.per_size()
    c3, c4 = st.columns(2)
    with c3:
        plot(figs.no_positive_by_size(per_size), key="dd_f_size_nopos")
    with c4:
        st.dataframe(per_size, hide_index=True, width="stretch")

with tabs[3]:
    c1, c2, c3, c4 = st.columns(4)
    only_problem = c1.checkbox(
        "Only unmatched boxes", key=kept("dd_only_problem"), help="Only images with a box that has no positive anchor"
    )
    min_boxes = c2.number_input("At least this many boxes", 0, 1000, 0, key=kept("dd_min_boxes"))
    sort_by = c3.selectbox(
        "Sort by",
        ["positives", "pos_neg_ratio", "boxes", "boxes_no_positive", "hard_negatives", "ignored", "image_id"],
        key=kept("dd_sort"),
    )
    descending = c4.toggle("Descending", value=True, key=kept("dd_desc"))
    table = filter_images(
        result.images, only_problem=only_problem, min_boxes=int(min_boxes), sort_by=sort_by, descending=descending
    )
    st.caption(f"{len(table):,} image(s) shown. Select a row to see the image with its labeled anchors.")
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        height=320,
        on_select="rerun",
        selection_mode="single-row",
        key="dd_images_table",
        column_config={"pos_neg_ratio": st.column_config.NumberColumn("pos:neg", format="%.2e")},
    )
    rows = event.selection.rows if event is not None else []
    if rows:
        index = int(table.index[rows[0]])
        row = result.images.loc[index]
        if source.images is None:
            st.info(
                "No images for this dataset: upload a zip of the images (or a dataset zip, or pick an images folder)."
            )
        else:
            boxes, classes, crowd = image_boxes(ds, result, index)
            show_ignored = st.checkbox("Show ignored anchors", value=True, key=kept("dd_show_ignored"))
            picture, summary, message = ui.anchor_view(
                f"{source.key}:{index}",
                str(row["file_name"]),
                config,
                show_ignored,
                source.images,
                boxes,
                classes,
                crowd,
            )
            if picture is None:
                st.warning(message)
            else:
                st.image(
                    picture,
                    caption=f"{row['file_name']} at the input size {row['input_width']}×{row['input_height']}: "
                    "positive anchors coloured like their box, ignored anchors in yellow, boxes without a positive "
                    "outlined in red",
                    width="stretch",
                )
                st.caption(
                    f"{summary['positive']:,} positive · {summary['ignored']:,} ignored · "
                    f"{summary['hard negative']:,} hard negative · {summary['easy negative']:,} easy negative · "
                    f"best possible recall {summary['best possible recall']:.2f} (boxes with an anchor at IoU ≥ "
                    f"{config.pos_thresh:g}) · "
                    f"{summary['unmatched GTs']} box(es) without a positive"
                )

with tabs[4]:
    no_pos = result.boxes_without_positive()
    why = (
        "their best anchors are below the positive threshold and the low-quality rule gives those anchors to "
        "another box they overlap more"
        if config.low_quality
        else f"no anchor reaches IoU {config.pos_thresh:g} with them (low-quality matches are off)"
    )
    st.markdown(f"**{len(no_pos):,} box(es)** get no positive anchor: {why}.")
    if len(no_pos) and source.images is not None:
        gallery = ui.crops(
            f"{source.key}:{config!r}",
            source.images,
            no_positive_rows(ds, result, config.pos_thresh),
        )
        if gallery:
            shown = "all of them" if len(gallery) == len(no_pos) else f"the {len(gallery)} smallest of {len(no_pos):,}"
            st.caption(f"Crops of {shown}, with the best IoU any anchor reaches; the table below lists every box.")
            cols = st.columns(6)
            for k, (crop, caption) in enumerate(gallery):
                cols[k % 6].image(crop, caption=caption, width="stretch")
        else:
            st.info("The images of these boxes are not available.")
    if len(no_pos) > ui.TABLE_ROWS:
        st.caption(f"The table shows the {ui.TABLE_ROWS:,} smallest; the Export tab has all {len(no_pos):,}.")
    st.dataframe(no_pos.head(ui.TABLE_ROWS), hide_index=True, width="stretch")

with tabs[5]:
    anchor_fit.fit_tab(source, ds, config)

with tabs[6]:
    summary_table = ds.problem_summary()
    if ds.problems.empty:
        st.success("No validation problems.")
    else:
        c1, c2 = st.columns([1, 2])
        with c1:
            st.dataframe(summary_table, hide_index=True, width="stretch")
        with c2:
            plot(figs.problems_by_kind(summary_table), key="dd_f_problems")
        severities = st.multiselect(
            "Severity", ["error", "warning", "info"], default=["error", "warning", "info"], key=kept("dd_sev")
        )
        st.dataframe(ds.problems[ds.problems["severity"].isin(severities)].head(5000), hide_index=True, width="stretch")

with tabs[7]:
    export_key = f"{source.key}:{config!r}"
    stem = ds.name.removesuffix(".json")
    if st.toggle("Prepare the downloads", key=kept("dd_exports"), help="Builds the CSV and Parquet files (cached)."):
        st.markdown("**Per-image statistics**")
        ui.export_buttons(export_key, f"{stem}-images", result.images, widget_key="dd_dl_images")
        st.markdown("**Per-class statistics**")
        ui.export_buttons(export_key, f"{stem}-classes", result.per_class(), widget_key="dd_dl_classes")
        st.markdown("**Per-box statistics**" + (" (the boxes without a positive)" if result.boxes_path else ""))
        ui.export_buttons(export_key, f"{stem}-boxes", result.boxes, widget_key="dd_dl_boxes")
        st.markdown("**Validation problems**")
        ui.export_buttons(export_key, f"{stem}-problems", ds.problems, widget_key="dd_dl_problems")
    st.caption("The same tables come from the command line: `python -m explorer scan DATASET --out ...`.")
