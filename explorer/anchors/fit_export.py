"""Anchor-fit output: torchvision, mmdetection and detectron2 snippets, the JSON report and the before/after table.

All three snippets describe the same anchors: per-level sizes ``base * scale`` and shared ratios h / w (all three
frameworks use h / w). mmdet's ``AnchorGenerator`` takes ``base_sizes`` and shared ``scales``, so its snippet is
written from the :class:`~explorer.anchors.fit_baselines.AnchorLadder`; its sizes equal the torchvision ones up to
the 4-decimal rounding of the latter, except when torchvision's default wins: its mmdet snippet is then mmdet's
own RetinaNet default (bases 32..512, scales ``2**(k/3)``), whose float sizes torchvision truncates (40.3 -> 40).
The frameworks still differ in their own conventions (torchvision rounds
cell anchors to integers, detectron2 orders anchors size-major; see :mod:`explorer.anchors.grid`).

Example:
    >>> from explorer.anchors.fit_baselines import AnchorLadder
    >>> print(torchvision_snippet(((32.0,), (64.0,)), (1.0,)))
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    <BLANKLINE>
    anchor_generator = AnchorGenerator(
        sizes=((32.0,), (64.0,)),
        aspect_ratios=((1.0,),) * 2,
    )
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from explorer.anchors.fit import HEAD_ANCHORS, Candidate, FitResult, covered_mask
from explorer.anchors.fit_baselines import AnchorLadder
from explorer.anchors.grid import AnchorConfig
from explorer.dataset.scan_result import ScanResult


def _tuple(values: tuple[float, ...]) -> str:
    inner = ", ".join(repr(float(v)) for v in values)
    return f"({inner},)" if len(values) == 1 else f"({inner})"


def torchvision_snippet(sizes: tuple[tuple[float, ...], ...], aspect_ratios: tuple[float, ...]) -> str:
    """Python code building torchvision's ``AnchorGenerator`` with these sizes and ratios (shared by the levels)."""
    levels = ", ".join(_tuple(s) for s in sizes)
    levels = f"({levels},)" if len(sizes) == 1 else f"({levels})"
    return (
        "from torchvision.models.detection.anchor_utils import AnchorGenerator\n\n"
        "anchor_generator = AnchorGenerator(\n"
        f"    sizes={levels},\n"
        f"    aspect_ratios=({_tuple(aspect_ratios)},) * {len(sizes)},\n"
        ")"
    )


def mmdet_snippet(ladder: AnchorLadder, strides: tuple[int, ...]) -> str:
    """mmdetection's ``anchor_generator`` dict (``base_sizes`` per level, shared ``scales`` and ``ratios``).

    Example:
        >>> print(mmdet_snippet(AnchorLadder((32.0, 64.0), (1.0, 1.5), (0.5, 1.0)), (8, 16)))
        anchor_generator=dict(
            type='AnchorGenerator',
            base_sizes=[32.0, 64.0],
            scales=[1.0, 1.5],
            ratios=[0.5, 1.0],
            strides=[8, 16])
    """
    return (
        "anchor_generator=dict(\n"
        "    type='AnchorGenerator',\n"
        f"    base_sizes={[float(b) for b in ladder.bases]},\n"
        f"    scales={[float(s) for s in ladder.scales]},\n"
        f"    ratios={[float(r) for r in ladder.ratios]},\n"
        f"    strides={[int(s) for s in strides]})"
    )


def detectron2_snippet(sizes: tuple[tuple[float, ...], ...], aspect_ratios: tuple[float, ...]) -> str:
    """detectron2's ``MODEL.ANCHOR_GENERATOR`` YAML block (sizes per level, one ratio list shared by the levels).

    Example:
        >>> print(detectron2_snippet(((32.0, 40.0),), (0.5, 1.0)))
        MODEL:
          ANCHOR_GENERATOR:
            SIZES: [[32.0, 40.0]]
            ASPECT_RATIOS: [[0.5, 1.0]]
    """
    level_text = ", ".join("[" + ", ".join(repr(float(v)) for v in s) + "]" for s in sizes)
    ratio_text = ", ".join(repr(float(r)) for r in aspect_ratios)
    return f"MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: [{level_text}]\n    ASPECT_RATIOS: [[{ratio_text}]]"


def head_warning(config: AnchorConfig) -> str | None:
    """A warning when the anchors per location differ from the pretrained head's 9 (``None`` when they do not).

    Example:
        >>> head_warning(AnchorConfig(aspect_ratios=(1.0,)))[:40]
        '3 anchors per location instead of 9: the'
    """
    counts = sorted(set(config.anchors_per_location()))
    if counts == [HEAD_ANCHORS]:
        return None
    shown = ", ".join(map(str, counts))
    return (
        f"{shown} anchors per location instead of {HEAD_ANCHORS}: the classification and box-regression heads "
        "change shape, so COCO-pretrained RetinaNet head weights cannot be loaded (the backbone and FPN still can)"
    )


def _nan_none(v: float) -> float | None:
    return None if v != v or math.isinf(v) else float(v)


def score_dict(c: Candidate) -> dict:
    """A candidate's anchors and its scores on the subset and the full dataset (JSON-ready)."""
    out: dict = {
        "name": c.name,
        "sizes": [list(map(float, s)) for s in c.config.sizes],
        "aspect_ratios": list(map(float, c.config.aspect_ratios)),
        "anchors_per_location": c.config.anchors_per_location()[0],
    }
    for tag, s in (("sample", c.sample), ("full", c.full)):
        if s is not None:
            out[tag] = {
                "covered_share": _nan_none(s.covered),
                "median_pos_per_box": _nan_none(s.median_pos),
                "p10_pos_per_box": _nan_none(s.p10_pos),
                "level_share_std": _nan_none(s.level_std),
                "class_covered_std": _nan_none(s.class_std),
                "boxes": s.boxes,
            }
    return out


def report_dict(fit: FitResult, tables: dict[str, pd.DataFrame] | None = None) -> dict:
    """The JSON report: the three snippets of the winner, before/after scores, every finalist, the search, and the
    before/after tables (``tables``: :func:`before_after_tables` of ``fit`` when the caller has them already)."""
    w = fit.winner
    sizes, ratios = w.config.sizes, w.config.aspect_ratios
    return {
        "torchvision": {
            "sizes": [list(map(float, s)) for s in sizes],
            "aspect_ratios": [list(map(float, ratios))] * len(sizes),
        },
        "mmdet": {
            "type": "AnchorGenerator",
            "base_sizes": list(map(float, w.ladder.bases)),
            "scales": list(map(float, w.ladder.scales)),
            "ratios": list(map(float, w.ladder.ratios)),
            "strides": list(map(int, w.config.strides)),
        },
        "detectron2": detectron2_snippet(sizes, ratios),
        "before": score_dict(fit.before),
        "after": score_dict(w),
        "winner": w.name,
        "warning": head_warning(w.config),
        "finalists": [score_dict(c) for c in fit.candidates],
        "tables": tables_dict(fit, tables),
        "search": {
            "mode": fit.mode,
            "subset_images": fit.subset_images,
            "covered_share_ci95_subset": [_nan_none(fit.ci[0]), _nan_none(fit.ci[1])],
            "evaluations": fit.evaluations,
            "seconds": fit.seconds,
            "stopped_by_budget": fit.stopped_by_budget,
            "pos_thresh": fit.scan.pos_thresh,
            "neg_thresh": fit.scan.neg_thresh,
            "low_quality": fit.scan.low_quality,
            "min_size": fit.scan.anchors.min_size,
            "max_size": fit.scan.anchors.max_size,
        },
    }


def before_after_table(before: ScanResult, after: ScanResult) -> pd.DataFrame:
    """Per COCO size bucket and overall: boxes, the share without a positive at IoU >= pos (low-quality rescues
    not counted, the fit's primary) and mean positives per box (rescues counted, as in the scan's own tables),
    before and after."""
    rows = []
    for name, b0, b1 in _buckets(before, after):
        rows.append(
            {
                "size": name,
                "boxes": len(b0),
                "no_positive_before": float(b0["uncovered"].mean()) if len(b0) else math.nan,
                "no_positive_after": float(b1["uncovered"].mean()) if len(b1) else math.nan,
                "pos_per_box_before": float(b0["num_positive"].mean()) if len(b0) else math.nan,
                "pos_per_box_after": float(b1["num_positive"].mean()) if len(b1) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def before_after_classes(before: ScanResult, after: ScanResult) -> pd.DataFrame:
    """Per class (the dataset's order): boxes and the share without a positive at IoU >= pos (the primary's
    complement), before and after, and the change in points; classes without boxes are left out."""
    b0 = before.boxes.assign(uncovered=~covered_mask(before))
    b1 = after.boxes.assign(uncovered=~covered_mask(after))
    names = dict(zip(before.category_ids.tolist(), before.category_names, strict=True))
    g0, g1 = b0.groupby("category_id"), b1.groupby("category_id")
    out = pd.DataFrame(
        {
            "boxes": g0.size(),
            "no_positive_before": g0["uncovered"].mean(),
            "no_positive_after": g1["uncovered"].mean(),
            "pos_per_box_before": g0["num_positive"].mean(),
            "pos_per_box_after": g1["num_positive"].mean(),
        }
    ).reset_index()
    out.insert(1, "category", [names.get(c, str(c)) for c in out["category_id"]])
    order = {c: k for k, c in enumerate(before.category_ids.tolist())}
    return out.sort_values("category_id", key=lambda s: s.map(order)).reset_index(drop=True)


def before_after_levels(before: ScanResult, after: ScanResult) -> pd.DataFrame:
    """Per pyramid level: anchors and positives before and after, and each level's share of all positives."""
    l0, l1 = before.levels, after.levels
    out = pd.DataFrame({"level": l0["level"].to_numpy()})
    for tag, lv in (("before", l0), ("after", l1)):
        pos = lv["positives"].to_numpy()
        out[f"anchors_{tag}"] = lv["anchors"].to_numpy()
        out[f"positives_{tag}"] = pos
        out[f"share_{tag}"] = pos / pos.sum() if pos.sum() else math.nan
    return out


def label_totals(before: ScanResult, after: ScanResult) -> pd.DataFrame:
    """Anchors by label over the dataset, before and after: positives, ignored, hard and easy negatives, and
    boxes without a positive (low-quality rescues counted as positives, as the scan counts them)."""
    rows = []
    for col in ("anchors", "positives", "ignored", "hard_negatives", "easy_negatives", "boxes_no_positive"):
        rows.append({"count": col, "before": int(before.images[col].sum()), "after": int(after.images[col].sum())})
    return pd.DataFrame(rows)


def before_after_tables(fit: FitResult) -> dict[str, pd.DataFrame]:
    """The before/after tables of a fit: ``per_size``, ``per_class``, ``per_level`` and ``labels`` (empty without
    the two full scans)."""
    b, a = fit.before_result, fit.winner_result
    if b is None or a is None:
        return {}
    return {
        "per_size": before_after_table(b, a),
        "per_class": before_after_classes(b, a),
        "per_level": before_after_levels(b, a),
        "labels": label_totals(b, a),
    }


def tables_dict(fit: FitResult, tables: dict[str, pd.DataFrame] | None = None) -> dict:
    """The before/after tables (size buckets, classes, levels, label totals) as JSON-ready records."""
    tables = before_after_tables(fit) if tables is None else tables
    return {k: [{c: _json_value(v) for c, v in r.items()} for r in t.to_dict("records")] for k, t in tables.items()}


def _json_value(v: object) -> object:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    return _nan_none(float(v))


def _buckets(before: ScanResult, after: ScanResult) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    b0 = before.boxes.assign(uncovered=~covered_mask(before))
    b1 = after.boxes.assign(uncovered=~covered_mask(after))
    out = [(s, b0[b0["size"] == s], b1[b1["size"] == s]) for s in ("small", "medium", "large")]
    return [*out, ("all", b0, b1)]


def format_table(table: pd.DataFrame) -> str:
    """Plain text of :func:`before_after_table`."""
    head = f"{'no positive >= pos (before -> after)':>36}  {'pos/box (before -> after)':>26}"
    lines = [f"{'size':<8}{'boxes':>8}  {head}"]
    for r in table.itertuples():
        no_pos = f"{_pct(r.no_positive_before)} -> {_pct(r.no_positive_after)}"
        per_box = f"{_num(r.pos_per_box_before)} -> {_num(r.pos_per_box_after)}"
        lines.append(f"{r.size:<8}{r.boxes:>8,}  {no_pos:>36}  {per_box:>26}")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f} %"


def _num(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"
