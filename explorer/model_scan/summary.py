"""Dataset-level views of a model scan, as tables: where the loss goes (any alpha, gamma), easy / hard by the
classifier against the IoU proxy, per level, the hardest images, the score-IoU density.

Per-image losses are torchvision's (normalized by the image's positives); the dataset's loss is their mean, so a
group's share is its normalized sums added over images, divided by the total.

Example:
    >>> from explorer.model_scan.reweight import LossBins
    >>> images = pd.DataFrame({"error": [""], "normalizer": [2.0], "positives_ce": [1.0], "hard_negatives_ce": [1.0],
    ...     "easy_negatives_ce": [2.0]})
    >>> ce_shares(images)["share"].round(2).tolist()
    [0.25, 0.25, 0.5]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.dataset.coco import CocoDataset
from explorer.labels import AnchorLabel
from explorer.model_scan.image_stats import COUNTED, HIGH_IOU, HIGH_SCORE, LOW_IOU, LOW_SCORE
from explorer.model_scan.run import HIST_BINS, ModelScan

SIZE_NAMES: tuple[str, ...] = ("small", "medium", "large")


def percent(share: float) -> str:
    """A share as a percentage that never reads 0 % or 100 % unless it is exactly that.

    Example:
        >>> percent(0.99995), percent(0.25), percent(0.00004), percent(1.0)
        ('99.995%', '25.0%', '0.004%', '100.0%')
    """
    text = f"{share:.1%}"
    if (text == "100.0%" and share < 1) or (text == "0.0%" and share > 0):
        return f"{share:.3g}" if share <= 0 else f"{share * 100:.5g}%" if share > 0.5 else f"{share * 100:.2g}%"
    return text


def scanned(images: pd.DataFrame) -> pd.DataFrame:
    """The rows of images that were read and run (no ``error``)."""
    return images[images["error"] == ""] if len(images) else images


def ce_shares(images: pd.DataFrame) -> pd.DataFrame:
    """Per counted group (positive, hard, easy negative): the CE loss (mean over images) and its share, exact."""
    ok = scanned(images)
    sums = [float((ok[f"{g.column}_ce"] / ok["normalizer"]).sum()) for g in COUNTED]
    return _shares(sums, len(ok))


def focal_shares(scan: ModelScan, *, alpha: float, gamma: float) -> pd.DataFrame:
    """Per counted group the focal loss at (alpha, gamma) from the bins, its share, and the bound on the estimate."""
    est, bound = scan.bins.focal(alpha=alpha, gamma=gamma)
    out = _shares(list(est), len(scanned(scan.images)))
    out["bound"] = bound / max(1, len(scanned(scan.images)))
    return out


def _shares(sums: list[float], n: int) -> pd.DataFrame:
    total = sum(sums)
    return pd.DataFrame(
        {
            "group": [g.display for g in COUNTED],
            "loss": [s / max(1, n) for s in sums],
            "share": [s / total if total > 0 else 0.0 for s in sums],
        }
    )


def pt_table(images: pd.DataFrame, pt_thresh: float) -> pd.DataFrame:
    """Per counted group: anchors easy and hard by the classifier's p_t, and their shares of the focal and CE loss;
    beside it what the IoU proxy says (every easy negative by IoU is "easy", every hard negative "hard")."""
    ok = scanned(images)
    rows = []
    totals = {k: float((ok[f"{k}_loss"]).sum()) or 1.0 for k in ("focal", "ce")}
    for g in COUNTED:
        for kind in ("easy", "hard"):
            col = f"{g.column}_{kind}_pt"
            rows.append(
                {
                    "group (by IoU)": g.display,
                    f"by p_t (≥ {pt_thresh:g} easy)": kind,
                    "anchors": int(ok[col].sum()),
                    "focal share": float((ok[f"{col}_focal"] / ok["normalizer"]).sum()) / totals["focal"],
                    "CE share": float((ok[f"{col}_ce"] / ok["normalizer"]).sum()) / totals["ce"],
                }
            )
    return pd.DataFrame(rows)


def proxy_disagreement(images: pd.DataFrame) -> dict[str, float]:
    """How far the IoU proxy is from the classifier: IoU-hard negatives the model finds easy, and IoU-easy negatives
    it finds hard (shares of their groups)."""
    ok = scanned(images)
    hard = AnchorLabel.HARD_NEGATIVE.column
    easy = AnchorLabel.EASY_NEGATIVE.column
    return {
        "iou_hard_but_easy": float(ok[f"{hard}_easy_pt"].sum()) / max(1, int(ok[hard].sum())),
        "iou_easy_but_hard": float(ok[f"{easy}_hard_pt"].sum()) / max(1, int(ok[easy].sum())),
    }


def level_table(images: pd.DataFrame) -> pd.DataFrame:
    """Per FPN level: positives, and the focal and CE loss (normalized per image, summed) with their shares."""
    ok = scanned(images)
    levels = sorted({c.split("_")[0] for c in ok.columns if c[:1] == "P" and c.endswith("_focal")})
    rows = []
    for lv in levels:
        rows.append(
            {
                "level": lv,
                "positives": int(ok[f"{lv}_positives"].sum()),
                "focal": float((ok[f"{lv}_focal"] / ok["normalizer"]).sum()),
                "CE": float((ok[f"{lv}_ce"] / ok["normalizer"]).sum()),
            }
        )
    out = pd.DataFrame(rows)
    for kind in ("focal", "CE"):
        total = out[kind].sum() if len(out) else 0.0
        out[f"{kind} share"] = out[kind] / total if total > 0 else 0.0
    return out


HARDEST_COLUMNS = ("file_name", "focal_loss", "ce_loss", "box_loss", "positives", "tp", "fp", "fn", "score_iou_corr")


def hardest(images: pd.DataFrame, by: str, n: int = 20) -> pd.DataFrame:
    """The ``n`` images with the largest ``by`` (``focal_loss``, ``ce_loss`` or ``box_loss``)."""
    if by not in ("focal_loss", "ce_loss", "box_loss"):
        raise ValueError(f"by must be focal_loss, ce_loss or box_loss, got {by!r}")
    ok = scanned(images)
    return ok.sort_values(by, ascending=False).head(n)[list(HARDEST_COLUMNS)].reset_index(drop=True)


def score_iou_density(scan: ModelScan, *, category: int | None = None, size: int | None = None) -> np.ndarray:
    """(HIST_BINS, HIST_BINS) counts of positives, score (rows) by IoU (columns), for one class / size or all."""
    out = np.zeros((HIST_BINS, HIST_BINS))
    for (c, s), h in scan.histograms.items():
        if (category is None or c == category) and (size is None or s == size):
            out += h
    return out


def assigner_table(images: pd.DataFrame) -> pd.DataFrame:
    """Per assigner compared in the scan: positive anchors, positives per box and boxes with no positive, over the
    scanned images (empty when the scan compared none)."""
    from explorer.anchors.compare import ASSIGNERS

    ok = scanned(images)
    boxes = int(ok["boxes"].sum()) if "boxes" in ok.columns else 0
    rows = []
    for name, info in ASSIGNERS.items():
        if f"{name}_positives" not in ok.columns:
            continue
        pos, none = int(ok[f"{name}_positives"].sum()), int(ok[f"{name}_no_positive"].sum())
        rows.append({"assigner": info.name, "positive anchors": pos, "positives per box": pos / max(1, boxes),
                     "boxes with no positive": none, "share with no positive": none / max(1, boxes)})  # fmt: skip
    columns = ["assigner", "positive anchors", "positives per box", "boxes with no positive", "share with no positive"]
    return pd.DataFrame(rows, columns=columns)


def consistency_counts(images: pd.DataFrame) -> dict[str, int]:
    """Positives with a high IoU but a low score, and with a high score but a low IoU, over the scanned images."""
    ok = scanned(images)
    return {
        f"IoU ≥ {HIGH_IOU:g}, score < {LOW_SCORE:g}": int(ok["high_iou_low_score"].sum()),
        f"score ≥ {HIGH_SCORE:g}, IoU < {LOW_IOU:g}": int(ok["high_score_low_iou"].sum()),
    }


def class_table(scan: ModelScan, ds: CocoDataset, ap: pd.DataFrame, score_thresh: float) -> pd.DataFrame:
    """Per class, over the images scanned without error: GT boxes (crowd left out), positive anchors, detections
    at ``score_thresh``, COCO AP and AP50 (``ap``: :func:`explorer.model_scan.ap.per_class_ap`), and the likely label
    problems of the class (a missing label counts for the detection's class, the others for the box's). Classes
    with no box, detection or positive are left out; sorted by GT boxes."""
    ok = scanned(scan.images)
    rows = np.flatnonzero(np.isin(ds.ann_image, np.flatnonzero(np.isin(ds.image_ids, ok["image_id"].to_numpy()))))
    boxes = pd.Series(ds.ann_category[rows][ds.iscrowd[rows] == 0]).value_counts()
    positives: dict[int, float] = {}
    for (c, _), h in scan.histograms.items():  # per (class, size bucket): add the buckets up
        positives[c] = positives.get(c, 0.0) + float(h.sum())
    dets = scan.detections[scan.detections["score"] >= score_thresh]["category_id"].value_counts()
    kinds = scan.problems.pivot_table(index="label", columns="kind", values="image_id", aggfunc="size", fill_value=0)
    out = pd.DataFrame({"category_id": [int(c) for c in ds.category_ids], "category": list(ds.category_names)})
    out["boxes"] = out["category_id"].map(boxes).fillna(0).astype(np.int64)
    out["positive anchors"] = out["category_id"].map(pd.Series(positives, dtype=np.float64)).fillna(0).astype(np.int64)
    out[f"detections ≥ {score_thresh:g}"] = out["category_id"].map(dets).fillna(0).astype(np.int64)
    out = out.merge(ap, on="category_id", how="left")
    for kind in ("missing_label", "not_found", "class_confusion"):
        col = kinds[kind] if kind in kinds.columns else pd.Series(dtype=np.int64)
        out[kind.replace("_", " ")] = out["category_id"].map(col).fillna(0).astype(np.int64)
    used = out[["boxes", "positive anchors", f"detections ≥ {score_thresh:g}"]].sum(axis=1) > 0
    return out[used].sort_values(["boxes", "category_id"], ascending=[False, True]).reset_index(drop=True)
