"""Dataset diagnostics: per-image anchor-label statistics over a whole COCO dataset, exact and fast.

For every image the scan reproduces what torchvision's RetinaNet training sees: the image resized as
``GeneralizedRCNNTransform`` does, its GT boxes scaled by ``resize_boxes`` (float32), the anchors of
``AnchorGenerator`` on the padded input, ``box_iou`` and ``Matcher(pos, neg, allow_low_quality_matches=True)``.
Crowd boxes are left out of matching. The counts per image (positives, ignored, hard negatives with
0 < IoU < neg, easy negatives with IoU = 0, boxes without a positive, boxes positive only through the low-quality
rule, positives per level) equal torchvision's exactly; ``tests/test_scan.py`` checks it image by image.

How it is fast (no per-image Python, no dense IoU matrix; the code is in :mod:`explorer.dataset.scan_numpy`):

- anchors depend only on the input size: an anchor is (level, cell shape a, row i, column j), and its float32
  coordinates are computed from (i, j) on demand, exactly as the generator does;
- only anchors that overlap a box can have IoU > 0, and for a box those form a rectangle of (i, j) per
  (level, a). Easy negatives are a count: the anchors outside the union of the boxes' rectangles. The union's size
  is counted with a vectorised sweep over horizontal slabs, for all images with the same number of boxes at once;
- positives, ignored anchors and low-quality matches need IoU >= neg, or IoU equal to a GT's best IoU. A lower
  bound on each GT's best IoU (its IoU with the anchors centred nearest to it) gives a threshold t <= best, and
  the geometry of IoU >= t bounds the candidate anchors to a few cells around the box; exact float32 IoUs are
  computed only for those (about a hundred per box);
- hard negatives = anchors overlapping some box minus the ignored and positive ones.

Images that the fast path cannot prove exact (a box thinner than 1e-3 px, a box that overlaps no anchor) go
through :func:`explorer.anchors.max_iou.assign_max_iou`, the dense-equivalent reference. On a CUDA device,
:func:`scan_dataset` can use a batched torch path (dense IoU per image, the torchvision operations themselves).

Example:
    >>> from explorer.dataset.coco import load_coco
    >>> coco = {"images": [{"id": 1, "width": 640, "height": 480}], "categories": [{"id": 1, "name": "a"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 64, 48],
    ...                          "iscrowd": 0, "area": 3072}]}
    >>> result = scan_dataset(load_coco(coco))
    >>> row = result.images.iloc[0]
    >>> int(row["anchors"]), int(row["positives"]), int(row["ignored"]), int(row["boxes_no_positive"])
    (163206, 35, 76, 0)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from explorer.anchors.grid import AnchorConfig, level_grids
from explorer.dataset.coco import SIZE_BUCKETS, CocoDataset
from explorer.dataset.scan_numpy import ChunkOut, ElongatedImageError, Geometry, geometry, scan_chunk
from explorer.labels import negatives_per_positive, ratio_text

ProgressFn = Callable[[int, int], None]

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

#: Per-image totals and their (n, L) per-level splits, as every path of the scan fills them.
_TOTALS: tuple[str, ...] = ("positives", "ignored", "hard", "easy")
_PER_LEVEL: tuple[str, ...] = ("level_pos", "level_ign", "level_hard", "level_easy")

#: Images per chunk of the fast path (bounds memory).
_CHUNK_IMAGES = 2048
#: Below this many images ``device="auto"`` keeps the numpy path even when CUDA is present: measured on an H100
#: host, the CUDA path's fixed costs (context, transfers, kernel launches) lose on small datasets (3,000 images:
#: CUDA 1.9 s vs numpy 1.0 s) and win only at COCO-train scale (118,000 images: CUDA 17.8 s vs numpy 23.6 s).
AUTO_CUDA_MIN_IMAGES = 50_000


@dataclass(frozen=True)
class ScanConfig:
    """What the scan labels with.

    Attributes:
        anchors: the anchor configuration and input-size rules (torchvision's RetinaNet by default).
        pos_thresh: IoU >= pos_thresh is positive (0.5).
        neg_thresh: IoU < neg_thresh is negative, [neg, pos) is ignored (0.4).
        low_quality: torchvision's ``allow_low_quality_matches`` (True).
        under, over: a class is tagged under-represented when its share of the positive anchors is below
            ``under`` times the uniform share 1 / C, over-represented when above ``over`` times it.
    """

    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    pos_thresh: float = 0.5
    neg_thresh: float = 0.4
    low_quality: bool = True
    under: float = 0.5
    over: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_thresh <= self.pos_thresh <= 1.0:
            raise ValueError(
                "need 0 < neg_thresh <= pos_thresh <= 1, "
                f"got neg_thresh={self.neg_thresh}, pos_thresh={self.pos_thresh}"
            )
        if not 0.0 <= self.under <= 1.0 <= self.over:
            raise ValueError(f"need 0 <= under <= 1 <= over, got under={self.under}, over={self.over}")

    def describe(self) -> dict:
        """Plain dict of the configuration (for display and cache keys)."""
        d = asdict(self)
        d["anchors"] = asdict(self.anchors)
        return d


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
        seconds: wall time of the scan; ``path``: "numpy", "torch-cuda" (and how many images went through the
            reference path, ``reference_images``).
    """

    images: pd.DataFrame
    boxes: pd.DataFrame
    levels: pd.DataFrame
    category_ids: np.ndarray
    category_names: list[str]
    config: ScanConfig
    seconds: float = 0.0
    path: str = "numpy"
    reference_images: int = 0

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
        if len(b):
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


# ----------------------------------------------------------------------------------------------------------------
# Reference path for single images (exact by construction, slow)
# ----------------------------------------------------------------------------------------------------------------


def reference_image_stats(
    boxes_input: np.ndarray, input_hw: tuple[int, int], cfg: ScanConfig
) -> dict[str, np.ndarray | int]:
    """Counts for one image from :func:`explorer.anchors.max_iou.assign_max_iou` on all its anchors.

    Args:
        boxes_input: (K, 4) float32 xyxy non-crowd boxes at the input scale, file order.
        input_hw: resized (unpadded) input size.
        cfg: the scan configuration.

    Returns:
        dict with ``positives``, ``ignored``, ``hard``, ``easy`` (ints), ``level_pos``, ``level_ign``,
        ``level_hard``, ``level_easy`` (L,) and per box ``box_pos``, ``box_best``, ``box_lq_only`` (K,).
    """
    from explorer.anchors.grid import generate_anchors
    from explorer.anchors.max_iou import assign_max_iou
    from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, POSITIVE

    anchors, levels = generate_anchors(input_hw[0], input_hw[1], cfg.anchors)
    grids = level_grids(input_hw[0], input_hw[1], cfg.anchors)
    a = assign_max_iou(
        anchors,
        np.asarray(boxes_input, np.float32).reshape(-1, 4),
        pos_thresh=cfg.pos_thresh,
        neg_thresh=cfg.neg_thresh,
        low_quality=cfg.low_quality,
        levels=levels,
        grids=grids,
    )
    nl = cfg.anchors.num_levels

    def per_level(code: int) -> np.ndarray:
        return np.bincount(levels[a.label == code], minlength=nl)[:nl].astype(np.int64)

    res: dict[str, np.ndarray | int] = {
        "level_pos": per_level(POSITIVE),
        "level_ign": per_level(IGNORED),
        "level_hard": per_level(HARD_NEGATIVE),
        "level_easy": per_level(EASY_NEGATIVE),
        "box_pos": a.num_positive.astype(np.int64),
        "box_best": a.best_iou.astype(np.float32),
        "box_lq_only": a.low_quality_only.astype(bool),
    }
    for key, lv_key in zip(_TOTALS, _PER_LEVEL, strict=True):
        res[key] = int(np.sum(res[lv_key]))
    return res


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


def input_boxes(ds: CocoDataset, geo_ratio_h: np.ndarray, geo_ratio_w: np.ndarray) -> np.ndarray:
    """All boxes of ``ds`` scaled to the input as torchvision's ``resize_boxes`` (float32 multiply by the
    per-axis float32 ratio). (B, 4) float32."""
    rh = geo_ratio_h[ds.ann_image]
    rw = geo_ratio_w[ds.ann_image]
    scale = np.stack([rw, rh, rw, rh], axis=1)
    return ds.boxes_xyxy.astype(np.float32) * scale


def _workers(requested: int | None, chunks: int) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"workers must be >= 1, got {requested}")
        return min(int(requested), max(1, chunks))
    return max(1, min(2, os.cpu_count() or 1, chunks))


#: Why ``device="cuda"`` is refused on a machine without a usable CUDA GPU.
NO_CUDA_MESSAGE = "no CUDA GPU is available; use device 'auto' or 'cpu'"


def _cuda_available() -> bool:
    """True when torch sees a CUDA device; avoids importing torch on machines without NVIDIA device nodes."""
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def scan_dataset(
    ds: CocoDataset,
    config: ScanConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    device: str = "auto",
    chunk_images: int = _CHUNK_IMAGES,
    workers: int | None = None,
) -> ScanResult:
    """Scan every image of a dataset.

    Args:
        ds: from :func:`explorer.dataset.coco.load_coco`.
        config: anchors and thresholds (torchvision's RetinaNet defaults).
        progress: called as ``progress(done_images, total_images)`` after each chunk.
        device: ``"auto"`` (CUDA when available and the dataset has at least :data:`AUTO_CUDA_MIN_IMAGES` images,
            else the numpy path, which is faster on small datasets), ``"cpu"`` (numpy), ``"cuda"`` (the
            torch path, :mod:`explorer.dataset.scan_torch`) or ``"torch-cpu"`` (the torch path on the CPU: slow,
            for tests).
        chunk_images: images per chunk of the numpy path.
        workers: threads for the numpy path (numpy releases the GIL in its array operations); ``None`` uses
            up to 2 threads (at most the CPU count) when there are several chunks.

    Returns:
        A :class:`ScanResult`.

    Raises:
        ValueError: an unknown ``device``, ``"cuda"`` without a CUDA GPU, or an image too elongated for the
            input size (named by id).
    """
    cfg = config or ScanConfig()
    if device not in ("auto", "cpu", "cuda", "torch-cpu"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'torch-cpu', got {device!r}")
    if device == "cuda" and not _cuda_available():
        raise ValueError(NO_CUDA_MESSAGE)
    use_torch = device in ("cuda", "torch-cpu") or (
        device == "auto" and ds.num_images >= AUTO_CUDA_MIN_IMAGES and _cuda_available()
    )
    t0 = time.perf_counter()
    n = ds.num_images
    try:
        geo = geometry(ds.heights, ds.widths, cfg.anchors)
    except ElongatedImageError as err:
        i = err.index
        raise ValueError(f"image id {ds.image_ids[i]} ({ds.file_names[i] or 'no file_name'}): {err}") from None
    L = geo.num_levels
    boxes_in = input_boxes(ds, geo.ratio_h, geo.ratio_w)
    matchable = ~ds.iscrowd
    m_rows = np.flatnonzero(matchable)  # rows of the dataset's annotation arrays, grouped by image
    m_img = ds.ann_image[m_rows]
    K_all = np.bincount(m_img, minlength=n)
    m_first = np.concatenate([[0], np.cumsum(K_all)])
    # index of each matchable box within its image (file order)
    m_k = np.arange(len(m_rows)) - m_first[m_img]
    res = {key: np.zeros(n, np.int64) for key in _TOTALS} | {key: np.zeros((n, L), np.int64) for key in _PER_LEVEL}
    box_pos = np.zeros(len(m_rows), np.int64)
    box_best = np.zeros(len(m_rows), np.float32)
    box_lq = np.zeros(len(m_rows), bool)
    fallback = np.zeros(n, bool)
    path = "numpy"
    if use_torch:
        from explorer.dataset.scan_torch import scan_torch

        torch_device = "cpu" if device == "torch-cpu" else "cuda"
        path = f"torch-{torch_device}"
        scan_torch(
            boxes_in[m_rows], m_img, K_all, geo, cfg, res, box_pos, box_best, box_lq, progress=progress,
            device=torch_device,
        )  # fmt: skip
    else:
        step = max(1, int(chunk_images))
        bounds = [(s, min(n, s + step)) for s in range(0, n, step)]

        def run(bound: tuple[int, int]) -> tuple[int, int, ChunkOut]:
            s, e = bound
            bs, be = m_first[s], m_first[e]
            sel = np.arange(s, e)
            return s, e, scan_chunk(boxes_in[m_rows[bs:be]], m_img[bs:be] - s, m_k[bs:be], e - s, geo, sel, cfg)

        n_workers = _workers(workers, len(bounds))
        if n_workers > 1:
            pool = ThreadPoolExecutor(n_workers)
            outputs = pool.map(run, bounds)
        else:
            pool = None
            outputs = map(run, bounds)
        try:
            for s, e, o in outputs:
                bs, be = m_first[s], m_first[e]
                for key in _TOTALS + _PER_LEVEL:
                    res[key][s:e] = getattr(o, key)
                box_pos[bs:be], box_best[bs:be], box_lq[bs:be] = o.box_pos, o.box_best, o.box_lq_only
                fallback[s:e] = o.fallback
                if progress is not None:
                    progress(e, n)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    for i in np.flatnonzero(fallback).tolist():
        sl = slice(m_first[i], m_first[i + 1])
        r = reference_image_stats(boxes_in[m_rows[sl]], (int(geo.input_h[i]), int(geo.input_w[i])), cfg)
        for key in _TOTALS + _PER_LEVEL:
            res[key][i] = r[key]
        box_pos[sl], box_best[sl], box_lq[sl] = r["box_pos"], r["box_best"], r["box_lq_only"]
    if progress is not None and n == 0:
        progress(n, n)
    result = _assemble(ds, cfg, geo, boxes_in, m_rows, m_img, K_all, res, box_pos, box_best, box_lq)
    result.seconds = time.perf_counter() - t0
    result.path = path
    result.reference_images = int(fallback.sum())
    return result


def _assemble(
    ds: CocoDataset, cfg: ScanConfig, geo: Geometry, boxes_in: np.ndarray, m_rows: np.ndarray, m_img: np.ndarray,
    K_all: np.ndarray, res: dict, box_pos: np.ndarray, box_best: np.ndarray, box_lq: np.ndarray,
) -> ScanResult:  # fmt: skip
    n = ds.num_images
    L = geo.num_levels
    bucket = ds.size_bucket()[m_rows]
    sizes = np.zeros((n, 3), np.int64)
    if len(m_rows):
        np.add.at(sizes, (m_img, bucket.astype(np.int64)), 1)
    crowd = np.bincount(ds.ann_image[ds.iscrowd], minlength=n)
    no_pos = box_pos == 0
    negatives = res["hard"] + res["easy"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(negatives > 0, res["positives"] / np.maximum(negatives, 1), np.nan)
        mean_pos = np.where(K_all > 0, res["positives"] / np.maximum(K_all, 1), np.nan)
    images = pd.DataFrame(
        {
            "image_id": ds.image_ids,
            "file_name": ds.file_names,
            "height": ds.heights,
            "width": ds.widths,
            "input_height": geo.input_h,
            "input_width": geo.input_w,
            "boxes": K_all,
            "crowd_boxes": crowd,
            "small": sizes[:, 0],
            "medium": sizes[:, 1],
            "large": sizes[:, 2],
            "anchors": geo.level_start[:, -1] if n else np.zeros(0, np.int64),
            "positives": res["positives"],
            "ignored": res["ignored"],
            "hard_negatives": res["hard"],
            "easy_negatives": res["easy"],
            "pos_neg_ratio": ratio,
            "boxes_no_positive": np.bincount(m_img[no_pos], minlength=n),
            "boxes_low_quality_only": np.bincount(m_img[box_lq], minlength=n),
            "mean_pos_per_box": mean_pos,
        }
    )
    for li, level in enumerate(geo.level_numbers):
        images[f"pos_P{level}"] = res["level_pos"][:, li]
    b = boxes_in[m_rows]
    ob = ds.boxes_xyxy[m_rows].astype(np.float64)
    w_img = ds.widths[m_img].astype(np.float64)
    h_img = ds.heights[m_img].astype(np.float64)
    boxes = pd.DataFrame(
        {
            "image_index": m_img,
            "ann_row": m_rows,
            "annotation_id": ds.ann_ids[m_rows],
            "image_id": ds.image_ids[m_img] if n else ds.image_ids[:0],
            "category_id": ds.ann_category[m_rows],
            "size": pd.Categorical.from_codes(bucket, categories=list(SIZE_BUCKETS)),
            "area": ds.areas[m_rows],
            "width": ob[:, 2] - ob[:, 0],
            "height": ob[:, 3] - ob[:, 1],
            "cx_rel": (ob[:, 0] + ob[:, 2]) / 2 / np.maximum(w_img, 1),
            "cy_rel": (ob[:, 1] + ob[:, 3]) / 2 / np.maximum(h_img, 1),
            "x1": b[:, 0],
            "y1": b[:, 1],
            "x2": b[:, 2],
            "y2": b[:, 3],
            "num_positive": box_pos,
            "best_iou": box_best,
            "low_quality_only": box_lq,
            "no_positive": no_pos,
        }
    )
    levels = pd.DataFrame(
        {
            "level": [f"P{lv}" for lv in geo.level_numbers],
            "anchors": np.diff(geo.level_start, axis=1).sum(axis=0) if n else np.zeros(L, np.int64),
            "positives": res["level_pos"].sum(axis=0),
            "ignored": res["level_ign"].sum(axis=0),
            "hard_negatives": res["level_hard"].sum(axis=0),
            "easy_negatives": res["level_easy"].sum(axis=0),
        }
    )
    return ScanResult(
        images=images,
        boxes=boxes,
        levels=levels,
        category_ids=ds.category_ids,
        category_names=list(ds.category_names),
        config=cfg,
    )


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
