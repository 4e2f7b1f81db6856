"""Dataset diagnostics: per-image anchor-label statistics over a whole COCO dataset, exact and fast.

For every image the scan reproduces what torchvision's RetinaNet training sees: the image resized as
``GeneralizedRCNNTransform`` does, its GT boxes scaled by ``resize_boxes`` (float32), the anchors of
``AnchorGenerator`` on the padded input, ``box_iou`` and ``Matcher(pos, neg, allow_low_quality_matches=True)``.
Crowd boxes are left out of matching. The counts per image (positives, ignored, hard negatives with
0 < IoU < neg, easy negatives with IoU = 0, boxes without a positive, boxes positive only through the low-quality
rule, positives per level) equal torchvision's exactly; ``tests/test_scan.py`` checks it image by image.

How it is fast (no per-image Python, no dense IoU matrix):

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
through :func:`explorer.assign.assign_max_iou`, the dense-equivalent reference. On a CUDA device,
:func:`scan_dataset` can use a batched torch path (dense IoU per image, the torchvision operations themselves).

Example:
    >>> from explorer.coco import load_coco
    >>> coco = {"images": [{"id": 1, "width": 640, "height": 480}], "categories": [{"id": 1, "name": "a"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 64, 48],
    ...                          "iscrowd": 0, "area": 3072}]}
    >>> result = scan_dataset(load_coco(coco))
    >>> row = result.images.iloc[0]
    >>> int(row["anchors"]), int(row["positives"]), int(row["ignored"]), int(row["boxes_no_positive"])
    (163206, 6, 10, 0)
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from explorer.anchors import AnchorConfig, level_grids, resized_size
from explorer.coco import SIZE_BUCKETS, CocoDataset

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

#: Box width or height (input pixels) below which an image goes through the reference path.
_TINY = 1e-3
#: Images per chunk of the fast path (bounds memory).
_CHUNK_IMAGES = 2048


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
            "neg_per_pos": neg / pos if pos else float("inf"),
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
# Geometry shared by all images of one input size
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Geometry:
    """Per image (I,) input size, box ratios and per level (I, L) grids; cell anchors per level."""

    input_h: np.ndarray
    input_w: np.ndarray
    ratio_h: np.ndarray  # float32
    ratio_w: np.ndarray  # float32
    gh: np.ndarray
    gw: np.ndarray
    sh: np.ndarray
    sw: np.ndarray
    oy: np.ndarray  # float64 centre offsets
    ox: np.ndarray
    level_start: np.ndarray  # (I, L + 1) first anchor index of each level, then the total
    level_numbers: tuple[int, ...]
    cells: list[np.ndarray]  # per level (A, 4) float32 cell anchors
    integral: bool = False  # integer cell anchors, zero offsets, coordinates < 2**24 (torchvision)

    @property
    def num_levels(self) -> int:
        return len(self.cells)


def _geometry(heights: np.ndarray, widths: np.ndarray, config: AnchorConfig) -> _Geometry:
    n = len(heights)
    num_levels = config.num_levels
    key = heights.astype(np.int64) * (1 << 32) + widths.astype(np.int64)
    uniq, inv = np.unique(key, return_inverse=True)
    sizes = np.zeros((len(uniq), 2), np.int64)
    grid_rows = np.zeros((len(uniq), 6, num_levels), np.float64)
    counts = np.zeros((len(uniq), num_levels), np.int64)
    cells: list[np.ndarray] | None = None
    cache: dict[tuple[int, int], tuple] = {}
    for u, k in enumerate(uniq.tolist()):
        h, w = k >> 32, k & 0xFFFFFFFF
        rh, rw = resized_size(h, w, config)
        sizes[u] = (rh, rw)
        if (rh, rw) not in cache:
            grids = level_grids(rh, rw, config)
            cache[(rh, rw)] = (
                np.array(
                    [
                        [g.grid_hw[0] for g in grids],
                        [g.grid_hw[1] for g in grids],
                        [g.stride_hw[0] for g in grids],
                        [g.stride_hw[1] for g in grids],
                        [g.offset_hw[0] for g in grids],
                        [g.offset_hw[1] for g in grids],
                    ],
                    np.float64,
                ),
                np.array([g.num_anchors for g in grids], np.int64),
            )
            if cells is None:
                cells = [g.cell_anchors.astype(np.float32) for g in grids]
        grid_rows[u], counts[u] = cache[(rh, rw)]
    if cells is None:
        grids = level_grids(config.min_size or 32, config.max_size or 32, config)
        cells = [g.cell_anchors.astype(np.float32) for g in grids]
    input_h = sizes[inv, 0] if n else np.zeros(0, np.int64)
    input_w = sizes[inv, 1] if n else np.zeros(0, np.int64)
    g = grid_rows[inv] if n else np.zeros((0, 6, num_levels))
    level_start = np.zeros((n, num_levels + 1), np.int64)
    if n:
        np.cumsum(counts[inv], axis=1, out=level_start[:, 1:])
    # torchvision's resize_boxes: ratio = float32(new) / float32(original), per axis.
    ratio_h = input_h.astype(np.float32) / heights.astype(np.float32)
    ratio_w = input_w.astype(np.float32) / widths.astype(np.float32)
    integral = (
        all(bool(np.all(c == np.round(c))) for c in cells)
        and not np.any(g[:, 4:6])
        and max(int(input_h.max(initial=0)), int(input_w.max(initial=0))) + 4096 < 2**24
        and all(float(np.abs(c).max(initial=0)) < 2**20 for c in cells)
    )
    return _Geometry(
        integral=integral,
        input_h=input_h,
        input_w=input_w,
        ratio_h=ratio_h,
        ratio_w=ratio_w,
        gh=g[:, 0].astype(np.int64),
        gw=g[:, 1].astype(np.int64),
        sh=g[:, 2].astype(np.int64),
        sw=g[:, 3].astype(np.int64),
        oy=g[:, 4],
        ox=g[:, 5],
        level_start=level_start,
        level_numbers=config.levels,
        cells=cells,
    )


def _coord(
    idx: np.ndarray, stride: np.ndarray, offset: np.ndarray, cell: np.ndarray | np.float32, integral: bool
) -> np.ndarray:
    """float32 anchor coordinate of grid index ``idx``, as the generator computes it: float32(idx * stride +
    offset) + cell, a float32 add. On an integral grid (integer cells, zero offsets, coordinates < 2**24, as
    torchvision's) this is the exact integer ``idx * stride + cell``, computed directly."""
    if integral:
        return (idx * stride + cell).astype(np.float32)
    shift = (idx * stride + offset).astype(np.float32)
    return shift + np.asarray(cell, dtype=np.float32)


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[r], starts[r] + lengths[r])`` over r (lengths >= 0), int64."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    keep = lengths > 0
    starts, lengths = starts[keep].astype(np.int64), lengths[keep].astype(np.int64)
    out = np.ones(total, np.int64)
    first = np.cumsum(lengths) - lengths
    out[0] = starts[0]
    out[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(out, out=out)


def _first_true(pred: Callable[[np.ndarray], np.ndarray], est: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Smallest j in [0, n] with pred(j) true, for a predicate monotone in j, starting from an estimate that is
    off by a few steps at most (floating-point division)."""
    j = np.clip(est, 0, n)
    for _ in range(64):
        down = (j > 0) & pred(np.maximum(j - 1, 0))
        up = (j < n) & ~pred(np.minimum(j, np.maximum(n - 1, 0)))
        if not (down.any() or up.any()):
            return j
        j = j - down + up
    raise RuntimeError("grid index search did not converge")  # pragma: no cover - a bug, not bad input


def _overlap_range(
    lo: np.ndarray, hi: np.ndarray, stride: np.ndarray, offset: np.ndarray, cell_lo: np.float32, cell_hi: np.float32,
    n: np.ndarray, integral: bool,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Grid indices [first, end) whose anchor extent [c(j) + cell_lo, c(j) + cell_hi] overlaps (lo, hi) with a
    positive length, exactly as float32 compares: anchor_hi > lo and anchor_lo < hi."""
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    st = stride.astype(np.float64)
    est_first = np.floor((lo64 - offset - float(cell_hi)) / st).astype(np.int64) + 1
    est_end = np.ceil((hi64 - offset - float(cell_lo)) / st).astype(np.int64)
    if integral:  # exact integer coordinates: compare in float64 (the float32 values are the same numbers)
        c_hi, c_lo = float(cell_hi), float(cell_lo)
        first = _first_true(lambda j: j * st + c_hi > lo64, est_first, n)
        end = _first_true(lambda j: j * st + c_lo >= hi64, est_end, n)
    else:
        first = _first_true(lambda j: _coord(j, stride, offset, cell_hi, False) > lo, est_first, n)
        end = _first_true(lambda j: _coord(j, stride, offset, cell_lo, False) >= hi, est_end, n)
    return first, np.maximum(end, first)


def _iou_f32(b: np.ndarray, ax1: np.ndarray, ay1: np.ndarray, ax2: np.ndarray, ay2: np.ndarray) -> np.ndarray:
    """IoU of boxes ``b`` (..., 4) float32 with anchors given by their float32 coordinates, torchvision's order:
    inter / ((area_gt + area_anchor) - inter)."""
    w = np.minimum(b[..., 2], ax2) - np.maximum(b[..., 0], ax1)
    h = np.minimum(b[..., 3], ay2) - np.maximum(b[..., 1], ay1)
    inter = np.maximum(w, np.float32(0)) * np.maximum(h, np.float32(0))
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_a = (ax2 - ax1) * (ay2 - ay1)
    return inter / (area_b + area_a - inter)


# ----------------------------------------------------------------------------------------------------------------
# Union of rectangles on a grid
# ----------------------------------------------------------------------------------------------------------------


def union_cells(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Number of grid cells covered by the union of K rectangles [x0, x1) x [y0, y1), for many problems at once.

    Sweep over horizontal slabs (between consecutive y edges, or single rows when ``rows`` is smaller); in each
    slab the covered length of the x intervals is the classic running-maximum merge, which needs the intervals in
    order of x0: the rectangles must be sorted by x0 along the last axis.

    Args:
        x0, x1, y0, y1: (..., K) integer arrays; empty rectangles (x1 <= x0 or y1 <= y0) are allowed.
        rows: if given and < 2K - 1, sweep rows 0..rows-1 instead of slabs (all y must lie in [0, rows]).

    Returns:
        (...,) int64 covered cells.

    Example:
        >>> union_cells(np.array([0, 2]), np.array([3, 5]), np.array([0, 1]), np.array([2, 3])).item()
        10
    """
    k = x0.shape[-1]
    if k == 0:
        return np.zeros(x0.shape[:-1], np.int64)
    if k == 1:
        return (np.maximum(x1 - x0, 0).astype(np.int64) * np.maximum(y1 - y0, 0))[..., 0]
    empty = (x1 <= x0) | (y1 <= y0)
    y0 = np.where(empty, 0, y0)
    y1 = np.where(empty, 0, y1)
    if rows is not None and rows < 2 * k - 1:
        lo = np.arange(rows, dtype=y0.dtype)
        hi = lo + 1
        lo = np.broadcast_to(lo, (*y0.shape[:-1], rows))
        hi = np.broadcast_to(hi, (*y0.shape[:-1], rows))
    else:
        edges = np.sort(np.concatenate([y0, y1], axis=-1), axis=-1)
        lo, hi = edges[..., :-1], edges[..., 1:]
    height = (hi - lo).astype(np.int64)
    cover = (y0[..., None, :] <= lo[..., :, None]) & (y1[..., None, :] >= hi[..., :, None])
    end = np.where(cover, x1[..., None, :], 0)
    run = np.maximum.accumulate(end, axis=-1)
    start = np.broadcast_to(x0[..., None, :], end.shape).copy()
    np.maximum(start[..., 1:], run[..., :-1], out=start[..., 1:])
    length = np.maximum(end - start, 0).sum(axis=-1, dtype=np.int64)
    return (length * height).sum(axis=-1)


# ----------------------------------------------------------------------------------------------------------------
# The fast exact path (numpy)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _ChunkOut:
    positives: np.ndarray  # (n,)
    ignored: np.ndarray
    hard: np.ndarray
    easy: np.ndarray
    level_pos: np.ndarray  # (n, L)
    level_ign: np.ndarray
    level_hard: np.ndarray
    level_easy: np.ndarray
    box_pos: np.ndarray  # (G,)
    box_best: np.ndarray
    box_lq_only: np.ndarray
    fallback: np.ndarray  # (n,) bool images to redo with the reference path


def _scan_chunk(
    boxes: np.ndarray, b_img: np.ndarray, b_k: np.ndarray, n_img: int, geo: _Geometry, sel: np.ndarray,
    cfg: ScanConfig,
) -> _ChunkOut:  # fmt: skip
    """Exact counts for n_img images (geometry rows ``sel``) with G non-crowd input-scale boxes.

    boxes: (G, 4) float32 grouped by image (b_img non-decreasing), b_k the box's index within its image.
    """
    num_levels = geo.num_levels
    pos_t, neg_t = np.float32(cfg.pos_thresh), np.float32(cfg.neg_thresh)
    G = len(boxes)
    K = np.bincount(b_img, minlength=n_img)
    gh, gw, sh, sw = geo.gh[sel], geo.gw[sel], geo.sh[sel], geo.sw[sel]
    oy, ox = geo.oy[sel], geo.ox[sel]
    lstart = geo.level_start[sel]
    total = lstart[:, -1]
    out = _ChunkOut(
        positives=np.zeros(n_img, np.int64), ignored=np.zeros(n_img, np.int64), hard=np.zeros(n_img, np.int64),
        easy=total.copy(), level_pos=np.zeros((n_img, num_levels), np.int64),
        level_ign=np.zeros((n_img, num_levels), np.int64), level_hard=np.zeros((n_img, num_levels), np.int64),
        level_easy=np.diff(lstart, axis=1), box_pos=np.zeros(G, np.int64), box_best=np.zeros(G, np.float32),
        box_lq_only=np.zeros(G, bool), fallback=np.zeros(n_img, bool),
    )  # fmt: skip
    if G == 0:
        return out
    bw32 = boxes[:, 2] - boxes[:, 0]
    bh32 = boxes[:, 3] - boxes[:, 1]
    tiny = (bw32 < _TINY) | (bh32 < _TINY) | ~np.isfinite(boxes).all(axis=1)
    out.fallback[b_img[tiny]] = True
    b64 = boxes.astype(np.float64)
    bcx, bcy = (b64[:, 0] + b64[:, 2]) / 2, (b64[:, 1] + b64[:, 3]) / 2
    bw, bh = b64[:, 2] - b64[:, 0], b64[:, 3] - b64[:, 1]
    barea = bw * bh
    # Per-box grid parameters per level: (G, L).
    G_gh, G_gw, G_sh, G_sw = gh[b_img], gw[b_img], sh[b_img], sw[b_img]
    G_oy, G_ox = oy[b_img], ox[b_img]

    integral = geo.integral
    # 1. Lower bound of each GT's best IoU: IoU with the anchors centred nearest to its centre.
    lower = np.zeros(G, np.float32)
    for lv in range(num_levels):
        cells = geo.cells[lv]
        c0x = (cells[:, 0].astype(np.float64) + cells[:, 2]) / 2
        c0y = (cells[:, 1].astype(np.float64) + cells[:, 3]) / 2
        s_w, s_h = G_sw[:, lv, None], G_sh[:, lv, None]
        o_x, o_y = G_ox[:, lv, None], G_oy[:, lv, None]
        j0 = np.clip(np.rint((bcx[:, None] - o_x - c0x) / s_w), 0, G_gw[:, lv, None] - 1).astype(np.int64)
        i0 = np.clip(np.rint((bcy[:, None] - o_y - c0y) / s_h), 0, G_gh[:, lv, None] - 1).astype(np.int64)
        iou = _iou_f32(
            boxes[:, None, :],
            _coord(j0, s_w, o_x, cells[:, 0], integral),
            _coord(i0, s_h, o_y, cells[:, 1], integral),
            _coord(j0, s_w, o_x, cells[:, 2], integral),
            _coord(i0, s_h, o_y, cells[:, 3], integral),
        )
        np.maximum(lower, np.nan_to_num(iou.max(axis=1), nan=0.0), out=lower)
    out.fallback[b_img[lower <= 0]] = True
    t = np.minimum(lower.astype(np.float64), float(neg_t)) if cfg.low_quality else np.full(G, float(neg_t))
    t = t * (1 - 1e-4)  # slack for float32 rounding: candidates are a superset
    t32 = t.astype(np.float32)
    area_b32 = bw32 * bh32

    # 2. Candidate anchors with IoU >= t for each GT, and their exact float32 IoU (separable: column overlap
    #    times row overlap), kept when IoU >= t.
    pair_g, pair_a, pair_iou, pair_lv = [], [], [], []
    for lv in range(num_levels):
        cells = geo.cells[lv]
        A = len(cells)
        cw = (cells[:, 2].astype(np.float64) - cells[:, 0])[None, :]
        ch = (cells[:, 3].astype(np.float64) - cells[:, 1])[None, :]
        c0x = ((cells[:, 0].astype(np.float64) + cells[:, 2]) / 2)[None, :]
        c0y = ((cells[:, 1].astype(np.float64) + cells[:, 3]) / 2)[None, :]
        # IoU >= t  <=>  inter >= t (area_a + area_b) / (1 + t), and inter <= x-overlap * min(heights).
        need = t[:, None] * (cw * ch + barea[:, None]) / (1 + t[:, None])
        ox_min = need / np.minimum(ch, bh[:, None])
        oy_min = need / np.minimum(cw, bw[:, None])
        feasible = (ox_min <= np.minimum(cw, bw[:, None]) + 1e-3) & (oy_min <= np.minimum(ch, bh[:, None]) + 1e-3)
        dx = (cw + bw[:, None]) / 2 - ox_min + 1e-3
        dy = (ch + bh[:, None]) / 2 - oy_min + 1e-3
        s_w, s_h = G_sw[:, lv, None].astype(np.float64), G_sh[:, lv, None].astype(np.float64)
        j_lo = np.maximum(np.ceil((bcx[:, None] - dx - G_ox[:, lv, None] - c0x) / s_w), 0)
        j_hi = np.minimum(np.floor((bcx[:, None] + dx - G_ox[:, lv, None] - c0x) / s_w), G_gw[:, lv, None] - 1)
        i_lo = np.maximum(np.ceil((bcy[:, None] - dy - G_oy[:, lv, None] - c0y) / s_h), 0)
        i_hi = np.minimum(np.floor((bcy[:, None] + dy - G_oy[:, lv, None] - c0y) / s_h), G_gh[:, lv, None] - 1)
        ok = feasible & (j_hi >= j_lo) & (i_hi >= i_lo)
        r = np.flatnonzero(ok.ravel())
        if len(r) == 0:
            continue
        g, a = np.divmod(r, A)
        jl = j_lo.ravel()[r].astype(np.int64)
        il = i_lo.ravel()[r].astype(np.int64)
        nj = j_hi.ravel()[r].astype(np.int64) - jl + 1
        ni = i_hi.ravel()[r].astype(np.int64) - il + 1
        # columns: x overlap and anchor width
        owner = np.repeat(np.arange(len(r)), nj)
        gc, ac = g[owner], a[owner]
        jv = _ragged(jl, nj)
        sw_c, ox_c = G_sw[gc, lv], G_ox[gc, lv]
        ax1 = _coord(jv, sw_c, ox_c, cells[ac, 0], integral)
        ax2 = _coord(jv, sw_c, ox_c, cells[ac, 2], integral)
        iw = np.maximum(np.minimum(ax2, boxes[gc, 2]) - np.maximum(ax1, boxes[gc, 0]), np.float32(0))
        aw = ax2 - ax1
        # rows: y overlap and anchor height
        owner = np.repeat(np.arange(len(r)), ni)
        gr, ar = g[owner], a[owner]
        iv = _ragged(il, ni)
        sh_r, oy_r = G_sh[gr, lv], G_oy[gr, lv]
        ay1 = _coord(iv, sh_r, oy_r, cells[ar, 1], integral)
        ay2 = _coord(iv, sh_r, oy_r, cells[ar, 3], integral)
        ih = np.maximum(np.minimum(ay2, boxes[gr, 3]) - np.maximum(ay1, boxes[gr, 1]), np.float32(0))
        ah = ay2 - ay1
        # pairs: every row runs over its (box, shape)'s columns
        run = nj[owner]
        col_start = np.cumsum(nj) - nj
        cs = _ragged(col_start[owner], run)
        inter = iw[cs] * np.repeat(ih, run)
        area_a = aw[cs] * np.repeat(ah, run)
        union = (np.repeat(area_b32[gr], run) + area_a) - inter
        iou = inter / union
        keep = iou >= np.repeat(t32[gr], run)
        row_base = lstart[b_img[gr], lv] + iv * G_gw[gr, lv] * A + ar
        anchor = np.repeat(row_base, run) + jv[cs] * A
        pair_g.append(np.repeat(gr, run)[keep])
        pair_a.append(anchor[keep])
        pair_iou.append(iou[keep])
        pair_lv.append(np.full(int(keep.sum()), lv, np.int8))
    pg = np.concatenate(pair_g) if pair_g else np.zeros(0, np.int64)
    pa = np.concatenate(pair_a) if pair_a else np.zeros(0, np.int64)
    piou = np.concatenate(pair_iou) if pair_iou else np.zeros(0, np.float32)
    plv = np.concatenate(pair_lv) if pair_lv else np.zeros(0, np.int8)
    best = np.zeros(G, np.float32)
    np.maximum.at(best, pg, piou)
    out.box_best = best
    if (best < lower).any():  # pragma: no cover - the candidate bound missed an anchor: a bug; stay exact anyway
        out.fallback[b_img[best < lower]] = True

    # 3. Per anchor: max IoU over GTs and its argmax (first GT in file order), low-quality promotion.
    tied = piou == best[pg]
    rel = (piou >= neg_t) | tied if cfg.low_quality else piou >= neg_t
    pg, pa, piou, plv, tied = pg[rel], pa[rel], piou[rel], plv[rel], tied[rel]
    img = b_img[pg]
    k_max = int(K.max()) + 1
    n_anchor_max = int(total.max()) + 1
    key = (img * n_anchor_max + pa) * k_max + b_k[pg]
    order = np.argsort(key)
    key = key[order]
    pg, pa, piou, plv, tied, img = pg[order], pa[order], piou[order], plv[order], tied[order], img[order]
    n_pairs = len(pg)
    anchor_key = key // k_max
    new = np.ones(n_pairs, bool)
    new[1:] = anchor_key[1:] != anchor_key[:-1]
    starts = np.flatnonzero(new)
    seg = np.cumsum(new) - 1
    if n_pairs:
        smax = np.maximum.reduceat(piou, starts)
        promoted = np.maximum.reduceat(tied.astype(np.int8), starts).astype(bool) if cfg.low_quality else None
        at_max = piou == smax[seg]
        pos_in = np.where(at_max, np.arange(n_pairs), n_pairs)
        arg_pair = np.minimum.reduceat(pos_in, starts)
        arg_g = pg[arg_pair]
    else:
        smax = np.zeros(0, np.float32)
        promoted = np.zeros(0, bool)
        arg_g = np.zeros(0, np.int64)
    s_img, s_lv = img[starts], plv[starts].astype(np.int64)
    if cfg.low_quality and n_pairs:
        # Promoted anchors whose IoU is below neg: their own argmax GT may be one not listed; check all GTs.
        low = np.flatnonzero(promoted & (smax < neg_t))
        if len(low):
            arg_g[low] = _full_argmax(boxes, K, b_img, pa[starts[low]], s_img[low], smax[low], geo, sel, s_lv[low])
        positive = (smax >= pos_t) | promoted
    else:
        positive = smax >= pos_t
    ignored = ~positive & (smax >= neg_t)
    overlap_counted = smax >= neg_t  # anchors overlapping a box with IoU >= neg
    extra = positive & ~overlap_counted  # promoted anchors with 0 < IoU < neg
    L = num_levels
    out.level_pos = np.bincount(s_img[positive] * L + s_lv[positive], minlength=n_img * L).reshape(n_img, L)
    out.level_ign = np.bincount(s_img[ignored] * L + s_lv[ignored], minlength=n_img * L).reshape(n_img, L)
    non_hard = overlap_counted | extra
    level_non_hard = np.bincount(s_img[non_hard] * L + s_lv[non_hard], minlength=n_img * L).reshape(n_img, L)
    out.box_pos = np.bincount(arg_g[positive], minlength=G)
    regular = np.bincount(arg_g[positive & (smax >= pos_t)], minlength=G)
    out.box_lq_only = (out.box_pos > 0) & (regular == 0)

    # 4. Anchors with IoU > 0 with some GT: union of the boxes' overlap rectangles, per (level, cell shape).
    union = _union_counts(boxes, b_img, K, n_img, geo, sel)
    out.level_easy = np.diff(lstart, axis=1) - union
    out.level_hard = union - level_non_hard
    out.positives = out.level_pos.sum(axis=1)
    out.ignored = out.level_ign.sum(axis=1)
    out.hard = out.level_hard.sum(axis=1)
    out.easy = out.level_easy.sum(axis=1)
    return out


def _full_argmax(
    boxes: np.ndarray, K: np.ndarray, b_img: np.ndarray, anchor: np.ndarray, a_img: np.ndarray, smax: np.ndarray,
    geo: _Geometry, sel: np.ndarray, a_lv: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """argmax GT (global box index, first in file order) of the given anchors over all GTs of their image."""
    first_box = np.concatenate([[0], np.cumsum(K)])
    coords = _anchor_coords(anchor, a_img, a_lv, geo, sel)
    n = len(anchor)
    reps = K[a_img]
    owner = np.repeat(np.arange(n), reps)
    gidx = np.repeat(first_box[a_img], reps) + (np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps))
    iou = _iou_f32(boxes[gidx], *(c[owner] for c in coords))
    seg_start = np.cumsum(reps) - reps
    mx = np.maximum.reduceat(iou, seg_start)
    cand = np.where(iou == mx[owner], np.arange(len(iou)), len(iou))
    return gidx[np.minimum.reduceat(cand, seg_start)]


def _anchor_coords(
    anchor: np.ndarray, a_img: np.ndarray, a_lv: np.ndarray, geo: _Geometry, sel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 (x1, y1, x2, y2) of flat anchor indices (within their image)."""
    x1 = np.empty(len(anchor), np.float32)
    y1, x2, y2 = np.empty_like(x1), np.empty_like(x1), np.empty_like(x1)
    rows = sel[a_img]
    for lv in np.unique(a_lv).tolist():
        m = a_lv == lv
        cells = geo.cells[lv]
        A = len(cells)
        r = rows[m]
        local = anchor[m] - geo.level_start[r, lv]
        a = local % A
        loc = local // A
        gw = geo.gw[r, lv]
        i, j = loc // gw, loc % gw
        x1[m] = _coord(j, geo.sw[r, lv], geo.ox[r, lv], cells[a, 0], geo.integral)
        y1[m] = _coord(i, geo.sh[r, lv], geo.oy[r, lv], cells[a, 1], geo.integral)
        x2[m] = _coord(j, geo.sw[r, lv], geo.ox[r, lv], cells[a, 2], geo.integral)
        y2[m] = _coord(i, geo.sh[r, lv], geo.oy[r, lv], cells[a, 3], geo.integral)
    return x1, y1, x2, y2


def _union_counts(
    boxes: np.ndarray, b_img: np.ndarray, K: np.ndarray, n_img: int, geo: _Geometry, sel: np.ndarray
) -> np.ndarray:
    """(n_img, L) anchors with IoU > 0 with at least one box."""
    num_levels = geo.num_levels
    out = np.zeros((n_img, num_levels), np.int64)
    # Sort boxes by x1 within each image (the order of their column ranges for every cell shape).
    perm = np.lexsort((boxes[:, 0], b_img))
    bx = boxes[perm]
    bi = b_img[perm]
    first_box = np.concatenate([[0], np.cumsum(K)])
    ks = np.unique(K[K > 0])
    for lv in range(num_levels):
        cells = geo.cells[lv]
        A = len(cells)
        g_sw, g_sh = geo.sw[sel][bi, lv], geo.sh[sel][bi, lv]
        g_ox, g_oy = geo.ox[sel][bi, lv], geo.oy[sel][bi, lv]
        g_gw, g_gh = geo.gw[sel][bi, lv], geo.gh[sel][bi, lv]
        x0 = np.empty((len(bx), A), np.int32)
        x1, y0, y1 = np.empty_like(x0), np.empty_like(x0), np.empty_like(x0)
        for a in range(A):
            x0[:, a], x1[:, a] = _overlap_range(
                bx[:, 0], bx[:, 2], g_sw, g_ox, cells[a, 0], cells[a, 2], g_gw, geo.integral
            )
            y0[:, a], y1[:, a] = _overlap_range(
                bx[:, 1], bx[:, 3], g_sh, g_oy, cells[a, 1], cells[a, 3], g_gh, geo.integral
            )
        gh_l = geo.gh[sel][:, lv]
        for k in ks.tolist():
            imgs = np.flatnonzero(k == K)
            idx = first_box[imgs][:, None] + np.arange(k)[None, :]  # (P, k)
            rows = int(gh_l[imgs].max())
            # Bound memory: P * A * slabs * k elements per batch.
            slabs = min(2 * k - 1, rows)
            step = max(1, 4_000_000 // max(1, A * slabs * k))
            for s in range(0, len(imgs), step):
                sl = slice(s, s + step)
                ii = idx[sl]
                counts = union_cells(
                    x0[ii].transpose(0, 2, 1),
                    x1[ii].transpose(0, 2, 1),
                    y0[ii].transpose(0, 2, 1),
                    y1[ii].transpose(0, 2, 1),
                    rows=rows,
                )
                out[imgs[sl], lv] = counts.sum(axis=1)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Reference path for single images (exact by construction, slow)
# ----------------------------------------------------------------------------------------------------------------


def reference_image_stats(
    boxes_input: np.ndarray, input_hw: tuple[int, int], cfg: ScanConfig
) -> dict[str, np.ndarray | int]:
    """Counts for one image from :func:`explorer.assign.assign_max_iou` on all its anchors.

    Args:
        boxes_input: (K, 4) float32 xyxy non-crowd boxes at the input scale, file order.
        input_hw: resized (unpadded) input size.
        cfg: the scan configuration.

    Returns:
        dict with ``positives``, ``ignored``, ``hard``, ``easy`` (ints), ``level_pos``, ``level_ign``,
        ``level_hard``, ``level_easy`` (L,) and per box ``box_pos``, ``box_best``, ``box_lq_only`` (K,).
    """
    from explorer.anchors import generate_anchors
    from explorer.assign import (
        EASY_NEGATIVE,
        HARD_NEGATIVE,
        IGNORED,
        POSITIVE,
        assign_max_iou,
    )

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
    for key, lv_key in (("positives", "level_pos"), ("ignored", "level_ign"), ("hard", "level_hard")):
        res[key] = int(np.sum(res[lv_key]))
    res["easy"] = int(np.sum(res["level_easy"]))
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
        ds: from :func:`explorer.coco.load_coco`.
        config: anchors and thresholds (torchvision's RetinaNet defaults).
        progress: called as ``progress(done_images, total_images)`` after each chunk.
        device: ``"auto"`` (CUDA when available, else the numpy path), ``"cpu"`` (numpy), ``"cuda"`` (the
            torch path, :mod:`explorer.scan_torch`) or ``"torch-cpu"`` (the torch path on the CPU: slow, for tests).
        chunk_images: images per chunk of the numpy path.
        workers: threads for the numpy path (numpy releases the GIL in its array operations); ``None`` uses
            up to 2 threads (at most the CPU count) when there are several chunks.

    Returns:
        A :class:`ScanResult`.
    """
    cfg = config or ScanConfig()
    if device not in ("auto", "cpu", "cuda", "torch-cpu"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'torch-cpu', got {device!r}")
    use_torch = device in ("cuda", "torch-cpu") or (device == "auto" and _cuda_available())
    t0 = time.perf_counter()
    n = ds.num_images
    geo = _geometry(ds.heights, ds.widths, cfg.anchors)
    L = geo.num_levels
    boxes_in = input_boxes(ds, geo.ratio_h, geo.ratio_w)
    matchable = ~ds.iscrowd
    m_rows = np.flatnonzero(matchable)  # rows of the dataset's annotation arrays, grouped by image
    m_img = ds.ann_image[m_rows]
    K_all = np.bincount(m_img, minlength=n)
    m_first = np.concatenate([[0], np.cumsum(K_all)])
    # index of each matchable box within its image (file order)
    m_k = np.arange(len(m_rows)) - m_first[m_img]
    res = {key: np.zeros(n, np.int64) for key in ("positives", "ignored", "hard", "easy")} | {
        key: np.zeros((n, L), np.int64) for key in ("level_pos", "level_ign", "level_hard", "level_easy")
    }
    box_pos = np.zeros(len(m_rows), np.int64)
    box_best = np.zeros(len(m_rows), np.float32)
    box_lq = np.zeros(len(m_rows), bool)
    fallback = np.zeros(n, bool)
    path = "numpy"
    if use_torch:
        from explorer.scan_torch import scan_torch

        torch_device = "cpu" if device == "torch-cpu" else "cuda"
        path = f"torch-{torch_device}"
        scan_torch(
            boxes_in[m_rows], m_img, K_all, geo, cfg, res, box_pos, box_best, box_lq, progress=progress,
            device=torch_device,
        )  # fmt: skip
    else:
        step = max(1, int(chunk_images))
        bounds = [(s, min(n, s + step)) for s in range(0, n, step)]

        def run(bound: tuple[int, int]) -> tuple[int, int, _ChunkOut]:
            s, e = bound
            bs, be = m_first[s], m_first[e]
            sel = np.arange(s, e)
            return s, e, _scan_chunk(boxes_in[m_rows[bs:be]], m_img[bs:be] - s, m_k[bs:be], e - s, geo, sel, cfg)

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
                for key in ("positives", "ignored", "hard", "easy"):
                    res[key][s:e] = getattr(o, key)
                for key in ("level_pos", "level_ign", "level_hard", "level_easy"):
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
        for key in ("positives", "ignored", "hard", "easy", "level_pos", "level_ign", "level_hard", "level_easy"):
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
    ds: CocoDataset, cfg: ScanConfig, geo: _Geometry, boxes_in: np.ndarray, m_rows: np.ndarray, m_img: np.ndarray,
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
        ("negatives per positive", "inf" if math.isinf(s["neg_per_pos"]) else f"{s['neg_per_pos']:,.0f}"),
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
