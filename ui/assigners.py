"""The Anchor lab's "Assigners side by side" tab: the model it uses, its outputs on the image, the assignments
(cached per model, image and boxes), and the tab's content."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import overlay
from explorer.anchors import compare
from explorer.dataset.image_boxes import BoxSet
from explorer.detection import architectures
from explorer.figures import anchors as anchor_figs
from explorer.figures import detection as detection_figs
from explorer.labels import POSITIVE
from ui.common import KEPT_VALUES, cached, digest, kept, plot
from ui.detection import ModelRequest, ServedModel, infer, load_model

DEFAULT = ["max_iou", "atss", "tal_mmdet", "simota"]


def served_model() -> ServedModel:
    """The model chosen on Live detections (kept for the session) when it is the demo or a COCO model whose weights
    are on this server; the demo model otherwise (a checkpoint stays on Live detections)."""
    kind = st.session_state.get(KEPT_VALUES, {}).get("det_model", "demo")
    if kind not in ("demo", *architectures.COCO_ARCHITECTURES):
        kind = "demo"
    return load_model(ModelRequest(kind, allow_download=False))


def model_labels(
    gts: BoxSet, class_names: dict[int, str], fallback: int | None = None
) -> tuple[np.ndarray | None, list[str]]:
    """The model's label id of every box (by class name, case and spaces ignored); boxes of a class the model does
    not have get ``fallback``, or, without one, None is returned with the names it lacks."""
    index = {" ".join(n.lower().split()): k for k, n in class_names.items()}
    ids = [index.get(" ".join(c.lower().split()), fallback) for c in gts.classes]
    missing = sorted({c for c in gts.classes if " ".join(c.lower().split()) not in index})
    if any(i is None for i in ids):
        return None, missing
    return np.asarray(ids, np.int64), missing


def inputs_for(
    served: ServedModel, image_key: str, image: np.ndarray, gts: BoxSet, fallback: int | None = None
) -> tuple:
    """``(Inputs, dense outputs, the input-size image, class names the model lacks)`` of the image under the model."""
    result = infer(served.key, image_key, served.model, image)
    dense = result.dense
    labels, missing = model_labels(gts, served.model.class_names, fallback)
    inputs = compare.inputs_from_dense(dense, gts.boxes, labels, int(served.model.model.transform.size_divisible))
    return inputs, dense, overlay.resize_image(image, *dense.input_size), missing


def assignments(served: ServedModel, image_key: str, names: list[str], inputs: compare.Inputs) -> dict:
    """The assignments, once per model, image, boxes and labels (shared cache; read-only)."""
    key = (
        served.key,
        image_key,
        digest(inputs.boxes.tobytes() + inputs.labels.tobytes()),
        tuple(names),
        inputs.logits is not None,
    )  # fmt: skip  (the logits follow from the model and the image)
    return cached("assigners", key, lambda: compare.run_assigners(names, inputs), max_entries=4,
                  spinner="Running the assigners…")  # fmt: skip


def section(served: ServedModel, image_key: str, image: np.ndarray, gts: BoxSet) -> None:
    """The tab: pick 2-4 assigners, see each one's positives, the boxes they disagree on, levels, overlaps, losses."""
    model_name = architectures.ARCH_LABELS.get(served.model.arch, served.model.arch)
    if len(gts) == 0:
        st.info("No GT boxes: every assigner leaves every anchor negative.")
        return
    names_of = served.model.class_names
    fallback = None
    if any(" ".join(c.lower().split()) not in {" ".join(n.lower().split()) for n in names_of.values()}
           for c in gts.classes):  # fmt: skip
        choices = [None, *sorted(names_of)]
        fallback = st.selectbox(
            "Boxes of a class the model does not have count as", choices, key=kept("al_compare_class"),
            format_func=lambda k: "(none: TAL and SimOTA off)" if k is None else names_of[k],
            help="TAL and SimOTA read the model's score for each box's class. Map the boxes' classes that the model "
            "does not know to one of its classes to compare them anyway.",
        )  # fmt: skip
    inputs, dense, picture, missing = inputs_for(served, image_key, image, gts, fallback)
    usable = [k for k, a in compare.ASSIGNERS.items() if not (a.needs_model and inputs.logits is None)]
    st.caption(
        f"Every assigner on the same anchors: those of **{model_name}** (the model chosen on Live detections, or the "
        f"demo model), {len(inputs.anchors):,} anchors at its input size {dense.input_size[1]}×{dense.input_size[0]}."
        " TAL and SimOTA also read its class scores and predicted boxes for this image."
        + (f" The boxes' classes {', '.join(missing[:4])} are not this model's" if missing else "")
        + ("; TAL and SimOTA are off." if missing and inputs.logits is None else "")
        + (f": they count as {names_of[fallback]}." if missing and fallback is not None else "")
    )  # fmt: skip
    names = st.multiselect(
        "Assigners (2 to 4)", usable, default=[n for n in DEFAULT if n in usable][:4], max_selections=4,
        format_func=lambda k: compare.ASSIGNERS[k].name, key=kept(f"al_compare_{inputs.logits is not None}"),
    )  # fmt: skip
    if len(names) < 2:
        st.info("Pick at least two assigners to compare.")
        return
    results = assignments(served, image_key, names, inputs)
    _images(picture, inputs, results)
    gt = compare.per_gt_table(results, gts.classes)
    st.dataframe(
        gt.style.apply(lambda r: ["background-color: rgba(230,140,0,0.25)" if r["differs"] else ""] * len(r), axis=1),
        hide_index=True, width="stretch",
    )  # fmt: skip
    st.caption("Positives per box; highlighted: the assigners disagree on this box.")
    levels = compare.per_level_table(results, inputs.levels, len(dense.grid_sizes))
    plot(anchor_figs.assigner_levels_figure(levels), key="al_fig_assigner_levels")
    c1, c2 = st.columns(2)
    c1.dataframe(compare.overlap_table(results), hide_index=True, width="stretch")
    if inputs.logits is not None:
        losses = compare.loss_table(results, inputs)
        shown = losses.style.format({k: "{:.4f}" for k in ("focal", "QFL", "Varifocal")}, na_rep="—")
        c2.dataframe(shown, hide_index=True, width="stretch")
        c2.caption("The classification loss each assignment gives on this model's outputs (per positive).")
    for name in names:
        if results[name].soft_target is not None:
            maps = compare.soft_target_maps(results[name], dense.grid_sizes, dense.anchors_per_location)
            title = f"{compare.ASSIGNERS[name].name}: soft target per anchor location"
            plot(detection_figs.level_heatmaps_figure(maps, title=title, value="target"),
                 key=f"al_fig_soft_{name}", theme=None)  # fmt: skip


def _images(picture: np.ndarray, inputs: compare.Inputs, results: dict) -> None:
    per_row = 2
    names = list(results)
    for start in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[start : start + per_row], strict=False):
            a = results[name]
            n = int((a.label == POSITIVE).sum())
            info = compare.ASSIGNERS[name]
            caption = f"{info.name}: {n:,} positives · {info.source}"
            col.image(
                compare.positives_image(picture, inputs, a), width="stretch", output_format="JPEG", caption=caption
            )
