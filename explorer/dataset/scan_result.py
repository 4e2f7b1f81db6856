"""The result of a dataset scan: per-image, per-box and per-level tables, and the aggregates built from them.

:class:`ScanResult` is what :func:`explorer.dataset.scan.scan_dataset` returns; its methods aggregate the tables
(per class, per level, per COCO size bucket) and :func:`format_summary` prints them for the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.dataset.coco import SIZE_BUCKETS
from explorer.dataset.scan_config import ScanConfig
from explorer.labels import negatives_per_positive, ratio_text

#: Columns of :attr:`ScanResult.images` (besides ``pos_P{level}`` per level).
IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "file_name",
    "height",
    "width",
    "input_height",
    "input_width",
    "boxes",
    "crowd_boxes",
    "small",
    "medium",
    "large",
    "anchors",
    "positives",
    "ignored",
    "hard_negatives",
    "easy_negatives",
    "pos_neg_ratio",
    "boxes_no_positive",
    "boxes_low_quality_only",
    "mean_pos_per_box",
)


@dataclass
class ScanResult:
    """Per-image and per-box statistics of a scan, and the aggregates built from them.

    Attributes:
        images: one row per image, :data:`IMAGE_COLUMNS` then ``pos_P3`` .. ``pos_P7``.
        boxes: one row per non-crowd box that was matched: ``image_index``, ``ann_row`` (row in the dataset's
            annotation arrays), ``annotation_id``, ``image_id``,
            ``category_id``, ``size`` (small/medium/large), ``area``, original-scale ``width`` / ``height``, centre
            relative to the image ``cx_rel`` / ``cy_rel``, input-scale ``x1 y1 x2 y2``, ``num_positive``,
            ``best_iou``, ``low_quality_only``, ``no_positive``.
        levels: one row per pyramid level: ``level``, ``anchors``, ``positives``, ``ignored``, ``hard_negatives``,
            ``easy_negatives``.
        categories: (C,) category ids and names of the dataset.
        config: the :class:`ScanConfig`.
        seconds: wall time of the scan; ``path``: "cpu", "torch-cuda" (and how many images went through the
            reference path, ``reference_images``).
        boxes_path: when the per-box table was streamed to a Parquet file (a scan of millions of boxes), its
            path; :attr:`boxes` then holds only the boxes without a positive, and ``class_groups`` /
            ``size_groups`` the per-category and per-size sums of all boxes (:func:`box_groups`).
    """

    images: pd.DataFrame
    boxes: pd.DataFrame
    levels: pd.DataFrame
    category_ids: np.ndarray
    category_names: list[str]
    config: ScanConfig
    seconds: float = 0.0
    path: str = "cpu"
    reference_images: int = 0
    boxes_path: str = ""
    class_groups: pd.DataFrame | None = None
    size_groups: pd.DataFrame | None = None

    def summary(self) -> dict[str, float]:
        """Headline figures: images, boxes, anchors and the share of each label, boxes without a positive."""
        im = self.images
        anchors = float(im["anchors"].sum())
        boxes = int(im["boxes"].sum())
        pos = float(im["positives"].sum())
        neg = float(im["hard_negatives"].sum() + im["easy_negatives"].sum())

        def share(x: float) -> float:
            return x / anchors if anchors else float("nan")

        return {
            "images": len(im),
            "boxes": boxes,
            "crowd_boxes": int(im["crowd_boxes"].sum()),
            "anchors": int(anchors),
            "positives": int(pos),
            "positive_share": share(pos),
            "ignored_share": share(float(im["ignored"].sum())),
            "hard_negative_share": share(float(im["hard_negatives"].sum())),
            "easy_negative_share": share(float(im["easy_negatives"].sum())),
            "neg_per_pos": negatives_per_positive(neg, pos),
            "boxes_no_positive": int(im["boxes_no_positive"].sum()),
            "boxes_no_positive_share": float(im["boxes_no_positive"].sum()) / boxes if boxes else float("nan"),
            "boxes_low_quality_only": int(im["boxes_low_quality_only"].sum()),
            "mean_pos_per_box": pos / boxes if boxes else float("nan"),
            "images_without_boxes": int((im["boxes"] == 0).sum()),
        }

    def per_class(self) -> pd.DataFrame:
        """One row per category: instances, images, positives, positives per instance, share of its boxes
        without a positive (and positive only through low-quality matches), its share of all positives, and a
        ``tag``: "under-represented" / "over-represented" by share of positive anchors against a uniform share."""
        b = self.boxes
        cats = pd.DataFrame({"category_id": self.category_ids, "category": self.category_names})
        if self.class_groups is not None:
            out = cats.merge(self.class_groups, on="category_id", how="left")
        elif len(b):
            g = b.groupby("category_id")
            agg = pd.DataFrame(
                {
                    "instances": g.size(),
                    "images": g["image_index"].nunique(),
                    "positives": g["num_positive"].sum(),
                    "no_positive": g["no_positive"].sum(),
                    "low_quality_only": g["low_quality_only"].sum(),
                    "mean_best_iou": g["best_iou"].mean(),
                }
            ).reset_index()
            out = cats.merge(agg, on="category_id", how="left")
        else:
            out = cats.assign(
                instances=0, images=0, positives=0, no_positive=0, low_quality_only=0, mean_best_iou=np.nan
            )
        for col in ("instances", "images", "positives", "no_positive", "low_quality_only"):
            out[col] = out[col].fillna(0).astype(np.int64)
        inst = out["instances"].replace(0, np.nan)
        out["positives_per_instance"] = out["positives"] / inst
        out["no_positive_share"] = out["no_positive"] / inst
        out["low_quality_only_share"] = out["low_quality_only"] / inst
        total_pos = out["positives"].sum()
        out["positive_share"] = out["positives"] / total_pos if total_pos else np.nan
        present = int((out["instances"] > 0).sum())
        uniform = 1.0 / present if present else np.nan
        ratio = out["positive_share"] / uniform
        tag = np.where(
            out["instances"] == 0,
            "absent",
            np.where(
                ratio < self.config.under,
                "under-represented",
                np.where(ratio > self.config.over, "over-represented", ""),
            ),
        )
        out["representation"] = ratio
        out["tag"] = tag
        return out

    def per_level(self) -> pd.DataFrame:
        """The :attr:`levels` table with each label's share of the level's anchors and of all positives."""
        out = self.levels.copy()
        a = out["anchors"].replace(0, np.nan)
        for col in ("positives", "ignored", "hard_negatives", "easy_negatives"):
            out[f"{col}_share"] = out[col] / a
        total = out["positives"].sum()
        out["share_of_positives"] = out["positives"] / total if total else np.nan
        return out

    def per_size(self) -> pd.DataFrame:
        """One row per COCO size bucket (small/medium/large, original-scale area): boxes, mean positives per
        box, share without a positive, share positive only through low-quality matches, mean best IoU."""
        if self.size_groups is not None:
            return self.size_groups.copy()
        b = self.boxes
        rows = []
        for name in SIZE_BUCKETS:
            sel = b[b["size"] == name] if len(b) else b
            n = len(sel)
            rows.append(
                {
                    "size": name,
                    "boxes": n,
                    "positives": int(sel["num_positive"].sum()) if n else 0,
                    "mean_pos_per_box": float(sel["num_positive"].mean()) if n else np.nan,
                    "no_positive_share": float(sel["no_positive"].mean()) if n else np.nan,
                    "low_quality_only_share": float(sel["low_quality_only"].mean()) if n else np.nan,
                    "mean_best_iou": float(sel["best_iou"].mean()) if n else np.nan,
                }
            )
        return pd.DataFrame(rows)

    def boxes_without_positive(self) -> pd.DataFrame:
        """The boxes that no anchor labels positive, smallest first."""
        b = self.boxes[self.boxes["no_positive"]]
        return b.sort_values("area", kind="stable")


def _images_per_category(ci: np.ndarray, img: np.ndarray, c: int) -> np.ndarray:
    """(c,) number of distinct images among boxes of each category (category index ``ci``, image ``img`` >= 0)."""
    width = int(img.max(initial=-1)) + 1
    if width * c <= 64_000_000:  # a mark per (image, category): no sort
        seen = np.zeros(width * c, bool)
        seen[img * c + ci] = True
        return seen.reshape(width, c).sum(axis=0)
    return np.bincount(np.unique(img * c + ci) % c, minlength=c)


def box_groups(
    category_id: np.ndarray, image_index: np.ndarray, num_positive: np.ndarray, low_quality_only: np.ndarray,
    best_iou: np.ndarray, size_code: np.ndarray, *, categories: np.ndarray, slice_rows: int = 1_000_000,
    rows: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The per-category sums of :meth:`ScanResult.per_class` and the rows of :meth:`ScanResult.per_size`, from
    the (B,) columns of the boxes (grouped by image) with numpy, ``slice_rows`` boxes at a time (cut at image
    boundaries): for a box table too large for pandas' groupby. ``categories``: every category id the boxes use.
    Counts are exact; means are float64 sums divided by counts (a pandas mean can differ in the last bits).
    ``rows``: the boxes' categories are ``category_id[rows]``, gathered slice by slice (no (B,) copy)."""
    cats = np.unique(np.asarray(categories, np.int64))
    c, n = len(cats), len(image_index)
    by_cat = np.zeros((5, c))  # instances, positives, no positive, low-quality only, sum of best IoU
    by_size = np.zeros((5, 3))
    images = np.zeros(c, np.int64)
    start = 0
    while start < n:
        end = min(n, start + max(1, slice_rows))
        if end < n:  # no image spans two slices, so that its categories are counted once
            end = int(np.searchsorted(image_index, image_index[end - 1], side="right"))
        sl = slice(start, end)
        cat = category_id[sl] if rows is None else category_id[rows[sl]]
        ci, img, size = np.searchsorted(cats, cat), image_index[sl], size_code[sl].astype(np.int64)
        pos = num_positive[sl]
        weights = (None, pos, pos == 0, low_quality_only[sl], best_iou[sl].astype(np.float64))
        for row, w in enumerate(weights):
            by_cat[row] += np.bincount(ci, w, minlength=c)
            by_size[row] += np.bincount(size, w, minlength=3)
        images += _images_per_category(ci, img - img.min(), c)
        start = end
    inst = by_cat[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        classes = pd.DataFrame(
            {
                "category_id": cats,
                "instances": inst.astype(np.int64),
                "images": images,
                "positives": by_cat[1].astype(np.int64),
                "no_positive": by_cat[2].astype(np.int64),
                "low_quality_only": by_cat[3].astype(np.int64),
                "mean_best_iou": by_cat[4] / inst,
            }
        )
    rows = []
    for k, name in enumerate(SIZE_BUCKETS):
        boxes = int(by_size[0, k])
        rows.append(
            {
                "size": name,
                "boxes": boxes,
                "positives": int(by_size[1, k]),
                "mean_pos_per_box": by_size[1, k] / boxes if boxes else np.nan,
                "no_positive_share": by_size[2, k] / boxes if boxes else np.nan,
                "low_quality_only_share": by_size[3, k] / boxes if boxes else np.nan,
                "mean_best_iou": by_size[4, k] / boxes if boxes else np.nan,
            }
        )
    return classes, pd.DataFrame(rows)


def format_summary(result: ScanResult) -> str:
    """A plain-text summary table of a scan (for the CLI)."""
    s = result.summary()

    def pct(x: float) -> str:
        return "n/a" if x != x else f"{100 * x:.3f} %"

    rows = [
        ("images", f"{s['images']:,}"),
        ("boxes (non-crowd)", f"{s['boxes']:,}"),
        ("crowd boxes (not matched)", f"{s['crowd_boxes']:,}"),
        ("anchors", f"{s['anchors']:,}"),
        ("positives", f"{s['positives']:,} ({pct(s['positive_share'])})"),
        ("ignored", pct(s["ignored_share"])),
        ("hard negatives (0 < IoU < neg)", pct(s["hard_negative_share"])),
        ("easy negatives (IoU = 0)", pct(s["easy_negative_share"])),
        ("negatives per positive", ratio_text(s["neg_per_pos"])),
        ("mean positives per box", f"{s['mean_pos_per_box']:.2f}"),
        ("boxes without a positive", f"{s['boxes_no_positive']:,} ({pct(s['boxes_no_positive_share'])})"),
        ("boxes positive only via low-quality", f"{s['boxes_low_quality_only']:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("")
    lv = result.per_level()
    lines.append("level  anchors        positives   pos share  ignored    hard neg      easy neg")
    for r in lv.itertuples():
        lines.append(
            f"{r.level:<5}  {r.anchors:>13,}  {r.positives:>10,}  {pct(r.share_of_positives):>9}  "
            f"{r.ignored:>9,}  {r.hard_negatives:>12,}  {r.easy_negatives:>13,}"
        )
    lines.append("")
    sz = result.per_size()
    lines.append("size    boxes       mean pos/box  no positive   low-quality only")
    for r in sz.itertuples():
        mean = "n/a" if r.mean_pos_per_box != r.mean_pos_per_box else f"{r.mean_pos_per_box:.2f}"
        lines.append(
            f"{r.size:<6}  {r.boxes:>10,}  {mean:>12}  {pct(r.no_positive_share):>11}  "
            f"{pct(r.low_quality_only_share):>15}"
        )
    return "\n".join(lines)
