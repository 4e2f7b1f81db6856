"""The Anchor fit tab of Dataset diagnostics: fit RetinaNet's anchors to the dataset on the page under the exact
matching rule (:mod:`explorer.anchors.fit`), compare with the published recipes, copy the configs, and use the
fitted anchors in this page's scan or in the Anchor lab.

A fit runs in the user's session (it takes tens of seconds) and is kept in that session only, per dataset key and
scan configuration (the last one: it holds two scans of the dataset, about 150 MB at COCO-train scale), so leaving
the tab or the page loses nothing. A hosted server caps the search budget (:data:`HOSTED_MAX_BUDGET_S`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from explorer.anchors import fit_export as fx
from explorer.anchors.config_text import format_ratios, format_sizes
from explorer.anchors.fit import MODES, FitResult, covered_mask, fit_anchors
from explorer.anchors.grid import default_config
from explorer.dataset.coco import CocoDataset
from explorer.dataset.image_boxes import boxes_from_coco
from explorer.dataset.scan_config import ScanConfig
from explorer.figures import anchor_fit as figs
from explorer.images import decode_image
from explorer.settings import limits
from ui.anchors import Handoff, send_to_lab
from ui.common import kept, md_escape, plot, set_kept
from ui.sources import Source

FITS = "dd_fits"
#: The shown fit and its before/after tables (:func:`before_after`).
TABLES = "dd_fit_tables"
KEPT_FITS = 1
#: The longest search a hosted server runs for one request (a fit holds one CPU of the server).
HOSTED_MAX_BUDGET_S = 60
LAB_PAGE = "pages/2_Anchor_lab.py"
OBJECTIVE = (
    "**Objective**, in this order: (1) the share of boxes with at least one positive anchor at IoU ≥ pos, "
    "low-quality rescues not counted; (2) the median, then the 10th percentile, of positives per box; (3) balance "
    "of positives across levels and of (1) across classes. Every candidate is scored by this page's own scan: "
    "torchvision's `AnchorGenerator` + `Matcher` with the thresholds and input size of the sidebar. The search runs "
    "on a seeded subset of images; the finalists (the search's best, torchvision's default, mmdetection's k-means, "
    "YOLOv5's autoanchor and pyodi's recipe) are then scored on every image and the best wins."
)


@dataclass(frozen=True)
class FitSettings:
    """The fit's own settings (the thresholds and input size come from the page's scan configuration)."""

    mode: str = "head"
    budget_s: float = 30.0
    subset: int = 500
    seed: int = 0


def settings_form() -> tuple[FitSettings, bool]:
    """The fit's settings and whether "Fit anchors" was pressed."""
    with st.form("dd_fit_form", border=True):
        c1, c2, c3, c4 = st.columns([1.6, 1.4, 1, 1])
        mode = c1.radio(
            "Mode", MODES, horizontal=True, key=kept("dd_fit_mode"),
            format_func={"head": "Head-compatible (9 per location)", "free": "Free"}.get,
            help="Head-compatible keeps 3 scales × 3 ratios, so COCO-pretrained head weights still load. Free also "
            "searches 1-4 scales and 1, 3 or 5 ratios.",
        )  # fmt: skip
        top = HOSTED_MAX_BUDGET_S if limits().hosted else 300
        budget = c2.slider(
            "Search budget (s)", 5, top, 30, 5, key=kept("dd_fit_budget"),
            help="The search stops when no step improves or the budget is spent; every finalist is then scanned on "
            "all images (about 1 s per 20,000 images each)." + (" Capped on this hosted server." if top < 300 else ""),
        )  # fmt: skip
        subset = c3.number_input("Subset images", 10, 100_000, 500, 10, key=kept("dd_fit_subset"))
        seed = c4.number_input("Seed", 0, 1_000_000, 0, 1, key=kept("dd_fit_seed"))
        pressed = st.form_submit_button("Fit anchors", type="primary")
    return FitSettings(str(mode), float(budget), int(subset), int(seed)), pressed


def fit_config(config: ScanConfig) -> ScanConfig:
    """The page's scan configuration with the convention's default anchors: the fit replaces sizes and ratios, so
    custom anchors in the sidebar (a fit's, once used) do not change what is fitted."""
    a = config.anchors
    anchors = default_config(a.convention, min_size=a.min_size, max_size=a.max_size, size_divisible=a.size_divisible)
    return dataclasses.replace(config, anchors=anchors)


def _fit_key(source: Source, config: ScanConfig) -> str:
    return f"{source.key}:{source.name}:{fit_config(config)!r}"


def run_fit(source: Source, ds: CocoDataset, config: ScanConfig, settings: FitSettings) -> FitResult | None:
    """Run the fit with its progress in a status box; keep it in the session. None (the reason shown) on error."""
    with st.status(f"Fitting anchors to {ds.name}…", expanded=True) as status:
        try:
            fit = fit_anchors(
                ds, fit_config(config), mode=settings.mode, budget_s=settings.budget_s, seed=settings.seed,
                subset_images=settings.subset, progress=status.write,
            )  # fmt: skip
        except ValueError as err:
            status.update(label="The fit could not run", state="error")
            st.error(str(err))
            return None
        done = f"Fitted in {fit.seconds:.1f} s ({fit.evaluations} scans)"
        status.update(label=done, state="complete", expanded=False)
    fits: dict = st.session_state.setdefault(FITS, {})
    fits.pop(_fit_key(source, config), None)
    fits[_fit_key(source, config)] = (settings, fit)
    while len(fits) > KEPT_FITS:
        fits.pop(next(iter(fits)))
    return fit


def kept_fit(source: Source, config: ScanConfig) -> tuple[FitSettings, FitResult] | None:
    """The session's fit of this dataset under this scan configuration, if any."""
    return st.session_state.get(FITS, {}).get(_fit_key(source, config))


def show_summary(fit: FitResult, settings: FitSettings) -> None:
    """Before/after metrics, the search's figures and the finalists."""
    w, b = fit.winner, fit.before
    if warning := fx.head_warning(w.config):
        st.warning(warning)
    m = st.columns(4)
    m[0].metric(
        "Boxes covered", f"{100 * w.full.covered:.2f} %", f"{100 * (w.full.covered - b.full.covered):+.2f} points",
        help="Share of boxes with a positive at IoU ≥ pos (no low-quality rescue), torchvision's default → fitted",
    )  # fmt: skip
    trade = "A trade-off, not a goal: tighter anchors give each box fewer positives. P10: the 10th percentile."
    m[1].metric(
        "Median positives / box", f"{w.full.median_pos:g}", f"{w.full.median_pos - b.full.median_pos:+g}",
        delta_color="off", help=trade,
    )  # fmt: skip
    m[2].metric(
        "P10 positives / box", f"{w.full.p10_pos:g}", f"{w.full.p10_pos - b.full.p10_pos:+g}",
        delta_color="off", help=trade,
    )  # fmt: skip
    m[3].metric("Anchors per location", f"{w.config.anchors_per_location()[0]}", help=f"winner: {w.name}")
    lo, hi = fit.ci
    budget = "the budget ended the search" if fit.stopped_by_budget else "the search converged"
    st.caption(
        f"Winner: **{w.name}**, before: torchvision's default ({100 * b.full.covered:.2f} % covered). "
        f"{settings.mode} mode, searched on {fit.subset_images:,} of {len(fit.winner_result.images):,} images "
        f"(seed {settings.seed}; 95 % bootstrap interval of the winner's covered share there: {100 * lo:.2f} .. "
        f"{100 * hi:.2f} %), {fit.evaluations} exact scans in {fit.seconds:.1f} s; {budget}."
    )
    rows = [
        {"anchors": c.name, "per location": c.config.anchors_per_location()[0],
         "covered (all images)": c.full.covered, "covered (subset)": c.sample.covered,
         "median pos/box": c.full.median_pos, "p10 pos/box": c.full.p10_pos}
        for c in fit.candidates
    ]  # fmt: skip
    st.dataframe(
        pd.DataFrame(rows), hide_index=True, width="stretch",
        column_config={
            "covered (all images)": st.column_config.NumberColumn(format="percent"),
            "covered (subset)": st.column_config.NumberColumn(format="percent"),
        },
    )  # fmt: skip


def before_after(fit: FitResult) -> tuple[dict[str, pd.DataFrame], str]:
    """The shown fit's before/after tables (:func:`explorer.anchors.fit_export.before_after_tables`) and its JSON
    report, built once per fit and kept in the session: every widget of the page reruns it, and at COCO-train scale
    they take about a second."""
    kept = st.session_state.get(TABLES)
    if kept is None or kept[0] is not fit:
        tables = fx.before_after_tables(fit)
        kept = st.session_state[TABLES] = (fit, tables, json.dumps(fx.report_dict(fit, tables), indent=2))
    return kept[1], kept[2]


def show_tables(fit: FitResult) -> None:
    """Before/after charts (size, level, class) and the label totals."""
    tables = before_after(fit)[0]
    sizes, levels, classes, totals = (tables[k] for k in ("per_size", "per_level", "per_class", "labels"))
    c1, c2 = st.columns(2)
    with c1:
        plot(figs.no_positive_before_after(sizes[sizes["size"] != "all"], "size"), key="dd_fit_f_size")
    with c2:
        plot(figs.positives_per_level_before_after(levels), key="dd_fit_f_level")
    plot(figs.no_positive_before_after(classes, "category"), key="dd_fit_f_class")
    st.caption(
        "Read: grey is torchvision's default, green the fitted anchors. A box without a positive is never trained "
        "as that object (only a low-quality rescue may give it one); the fit trades positives per box for covering "
        "more boxes. Fewer positives per box is expected when the anchors get tighter; check the per-level balance."
    )
    c3, c4 = st.columns([1, 2])
    with c3:
        st.dataframe(totals, hide_index=True, width="stretch")
    with c4:
        pct = st.column_config.NumberColumn(format="percent")
        st.dataframe(
            classes, hide_index=True, width="stretch", height=250,
            column_config={"no_positive_before": pct, "no_positive_after": pct},
        )  # fmt: skip


def show_snippets(fit: FitResult, stem: str) -> None:
    """The three configs, copyable, and the JSON report as a download."""
    w = fit.winner
    st.markdown("**The fitted anchors, ready to paste** (the copy button is at each block's top right)")
    tabs = st.tabs(["torchvision", "mmdetection", "detectron2", "fit.json"])
    tabs[0].code(fx.torchvision_snippet(w.config.sizes, w.config.aspect_ratios), language="python")
    tabs[1].code(fx.mmdet_snippet(w.ladder, w.config.strides), language="python")
    tabs[2].code(fx.detectron2_snippet(w.config.sizes, w.config.aspect_ratios), language="yaml")
    report = before_after(fit)[1]
    tabs[3].code(report[:4000] + ("\n…" if len(report) > 4000 else ""), language="json")
    st.download_button("⬇ fit.json", report.encode(), f"{stem}-fit.json", "application/json", key="dd_fit_dl")
    st.caption(
        "The same from the command line: `python -m explorer fit-anchors DATASET --out fit.json`; "
        "`python -m explorer scan DATASET --anchors fit.json` scans with the fitted anchors."
    )


def use_in_scan(fit: FitResult) -> None:
    """on_click: this page's scan uses the fitted sizes and ratios (its custom-anchor widgets)."""
    values = {
        "dd_custom": True,
        "dd_sizes": format_sizes(fit.winner.config.sizes),
        "dd_ratios_text": format_ratios(fit.winner.config.aspect_ratios),
    }
    set_kept(values)


def changed_images(fit: FitResult) -> pd.DataFrame:
    """Images ranked by how many boxes the fit covers that the default did not (then by boxes)."""
    a = fit.winner_result.boxes
    gained = (covered_mask(fit.winner_result) & ~covered_mask(fit.before_result)).astype(np.int64)
    lost = (covered_mask(fit.before_result) & ~covered_mask(fit.winner_result)).astype(np.int64)
    per = pd.DataFrame({"image_index": a["image_index"], "gained": gained, "lost": lost}).groupby("image_index").sum()
    images = fit.winner_result.images[["file_name", "boxes"]].join(per).fillna(0)
    images[["gained", "lost"]] = images[["gained", "lost"]].astype(np.int64)
    return images.sort_values(["gained", "boxes"], ascending=False)


def lab_values(fit: FitResult, config: ScanConfig) -> dict[str, object]:
    """The Anchor lab's widget values that show one image under the fitted anchors and this page's rule."""
    a = config.anchors
    return {
        "al_convention": a.convention, "al_anchor_mode": "custom",
        "al_sizes": format_sizes(fit.winner.config.sizes),
        "al_ratios_text": format_ratios(fit.winner.config.aspect_ratios),
        "al_resize": True, "al_min": int(a.min_size), "al_max": int(a.max_size), "al_div": int(a.size_divisible),
        "al_assigner": "max_iou", "al_pos": round(min(config.pos_thresh, 0.95), 2),
        "al_neg": round(min(config.neg_thresh, config.pos_thresh, 0.95), 2), "al_lq": bool(config.low_quality),
        "al_sem": "torchvision",
    }  # fmt: skip


def open_in_lab(fit: FitResult, source: Source, ds: CocoDataset, config: ScanConfig) -> None:
    """Pick an image (most boxes gained first) and send it with the fitted anchors to the Anchor lab."""
    if source.images is None:
        st.info("Add the dataset's images (a zip or a folder) to inspect one image under the fitted anchors.")
        return
    ranked = changed_images(fit)
    labels = {int(i): f"{r.file_name} (+{r.gained} covered, -{r.lost}, {r.boxes} boxes)" for i, r in ranked.iterrows()}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    index = c1.selectbox("Image", list(labels)[:500], format_func=labels.get, key="dd_fit_image")
    if c2.button("Open in the Anchor lab", key="dd_fit_open", icon=":material/open_in_new:"):
        name = ds.file_names[int(index)]
        data = source.images.read(name)
        if data is None:
            st.error(f"{name} is not among the images ({source.images.description}).")
            return
        try:
            image = decode_image(data, max_pixels=limits().max_pixels)
            boxes = boxes_from_coco(ds, name, image.shape[1], image.shape[0])
        except ValueError as err:
            st.error(f"{name}: {err}")
            return
        send_to_lab(Handoff(data, name, boxes, f"the anchor fit of {md_escape(ds.name)}"), lab_values(fit, config))
        st.switch_page(LAB_PAGE)


def fit_tab(source: Source, ds: CocoDataset, config: ScanConfig) -> None:
    """The whole tab."""
    st.markdown(OBJECTIVE)
    settings, pressed = settings_form()
    if pressed:
        fit = run_fit(source, ds, config, settings)
        kept_pair = (settings, fit) if fit is not None else None
    else:
        kept_pair = kept_fit(source, config)
    if kept_pair is None:
        if not pressed:
            st.info("Press **Fit anchors**: the search takes about the budget, then every finalist scans all images.")
        return
    settings, fit = kept_pair
    show_summary(fit, settings)
    show_tables(fit)
    show_snippets(fit, ds.name.removesuffix(".json"))
    st.markdown("**Use the fitted anchors**")
    st.button(
        "Use them in this page's scan", key="dd_fit_use", on_click=use_in_scan, args=(fit,),
        help="Sets the sidebar's custom anchors: every tab (and the image view) then shows the fitted anchors.",
    )  # fmt: skip
    open_in_lab(fit, source, ds, config)
