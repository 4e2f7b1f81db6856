"""Published anchor-fitting recipes, mapped onto RetinaNet's five levels, for :mod:`explorer.anchors.fit` to score.

Every recipe here returns an :class:`AnchorLadder`: one base size per level (P3..P7), scale multipliers shared by
the levels (the first is 1) and aspect ratios (h / w) shared by the levels: the shape of mmdet's
``AnchorGenerator(base_sizes, scales, ratios)`` and, with sizes ``base * scale``, of torchvision's
``AnchorGenerator(sizes, aspect_ratios)``. All recipes see the boxes at the network's input scale (the resize rule
of the scan's :class:`~explorer.anchors.grid.AnchorConfig`), not the original image scale.

Mapping of a flat set of 15 cluster anchors (k-means recipes) onto 5 levels x 3 scales x 3 ratios: the anchors are
sorted by area and split into 5 groups of 3, smallest to P3 (as mmdet and YOLOv5 split theirs over their levels);
a level's base is the smallest size sqrt(w * h) of its group, the shared multipliers are the geometric means over
levels of each group's sizes divided by its smallest; the three ratios are the medians of h / w over the lower,
middle and upper thirds of the 15 anchors sorted by h / w. RetinaNet's head needs ``sizes x ratios`` at every
location, so this product form is the nearest thing to the clusters that a pretrained head can load.

Example:
    >>> AnchorLadder((32, 64), (1.0, 1.5), (0.5, 1.0)).sizes()
    ((32.0, 48.0), (64.0, 96.0))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Levels, scales per level and ratios the k-means recipes fill: 5 x 3 clusters, 3 ratios (9 per location).
LEVELS, SCALES, RATIOS = 5, 3, 3


@dataclass(frozen=True)
class AnchorLadder:
    """Per-level base sizes, shared scale multipliers and shared ratios (h / w).

    Attributes:
        bases: (L,) base size (px) of each level, P3 first.
        scales: (S,) multipliers of the base, shared by the levels.
        ratios: (R,) aspect ratios h / w, shared by the levels.
    """

    bases: tuple[float, ...]
    scales: tuple[float, ...]
    ratios: tuple[float, ...]

    def sizes(self) -> tuple[tuple[float, ...], ...]:
        """Sizes per level, ``round(base * scale, 4)`` (what the torchvision snippet and the scan use)."""
        return tuple(tuple(round(float(b) * float(s), 4) for s in self.scales) for b in self.bases)


def _ladder_from_clusters(wh: np.ndarray) -> AnchorLadder:
    """The product-form ladder nearest to 15 (w, h) cluster anchors (see the module docstring)."""
    wh = np.asarray(wh, np.float64)
    size = np.sqrt(wh[:, 0] * wh[:, 1])
    groups = np.sort(size)[: LEVELS * SCALES].reshape(LEVELS, SCALES)
    rel = np.exp(np.log(groups / groups[:, :1]).mean(axis=0))
    ratio = np.sort(wh[:, 1] / wh[:, 0])
    thirds = np.array_split(ratio, RATIOS)
    ratios = tuple(round(float(np.median(t)), 4) for t in thirds)
    return AnchorLadder(
        bases=tuple(round(float(b), 4) for b in groups[:, 0]),
        scales=tuple(round(float(r), 4) for r in rel),
        ratios=ratios,
    )


def _iou_origin(wh: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """IoU of boxes and centres all centred at the origin: (N, K)."""
    inter = np.minimum(wh[:, None, 0], centers[None, :, 0]) * np.minimum(wh[:, None, 1], centers[None, :, 1])
    area = wh[:, 0] * wh[:, 1]
    return inter / (area[:, None] + (centers[:, 0] * centers[:, 1])[None, :] - inter)


def kmeans_iou(wh: np.ndarray, k: int = LEVELS * SCALES, *, seed: int = 0, iters: int = 1000) -> AnchorLadder:
    """mmdetection's ``tools/analysis_tools/optimize_anchors.py``, ``YOLOKMeansAnchorOptimizer``.

    As mmdet describes and implements it: boxes become ``[-w/2, -h/2, w/2, h/2]`` (centred at the origin), ``k``
    centres start as ``k`` boxes drawn without replacement, then expectation (each box to the centre of highest
    IoU, i.e. smallest 1 - IoU distance) and maximisation (each centre becomes the mean (w, h) of its boxes) alternate
    until the assignment stops changing or ``iters`` rounds; the centres are sorted by area. The 15 centres are
    mapped onto RetinaNet's levels as in the module docstring.

    Args:
        wh: (N, 2) box widths and heights at input scale (N >= k); seed: the initial draw.
    """
    wh = _checked(wh, k)
    rng = np.random.default_rng(seed)
    centers = wh[rng.choice(len(wh), k, replace=False)].copy()
    assign = np.full(len(wh), -1)
    for _ in range(iters):
        new = _iou_origin(wh, centers).argmax(axis=1)
        if (new == assign).all():
            break
        assign = new
        for j in range(k):
            if (assign == j).any():
                centers[j] = wh[assign == j].mean(axis=0)
    return _ladder_from_clusters(centers[np.argsort(centers[:, 0] * centers[:, 1])])


def _checked(wh: np.ndarray, k: int) -> np.ndarray:
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(axis=1)]
    if len(wh) < k:
        raise ValueError(f"need at least {k} boxes with positive width and height to cluster, got {len(wh)}")
    return wh


def _kmeans_euclid(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Lloyd's k-means in Euclidean distance: one run of at most ``iters`` rounds from k points drawn without
    replacement (scipy is not a dependency; scipy's ``kmeans`` keeps the best of ``iter`` such runs)."""
    centers = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        d = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        assign = d.argmin(axis=1)
        new = np.stack([x[assign == j].mean(axis=0) if (assign == j).any() else centers[j] for j in range(k)])
        if np.allclose(new, centers):
            break
        centers = new
    return centers


def yolov5_fitness(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> float:
    """YOLOv5's ``anchor_fitness``: r = min(w / wa, wa / w, h / ha, ha / h), best over anchors, mean of the best
    ratios above 1 / thr (others count 0; a box exactly 4x its anchor counts 0, the comparison is strict).

    Example:
        >>> round(yolov5_fitness(np.array([[10.0, 20.0], [40.0, 40.0]]), np.array([[10.0, 10.0]])), 3)
        0.25
    """
    r = wh[:, None, :] / anchors[None, :, :]
    x = np.minimum(r, 1.0 / r).min(axis=2)
    best = x.max(axis=1)
    return float((best * (best > 1.0 / thr)).mean())


def yolov5_autoanchor(
    wh: np.ndarray, k: int = LEVELS * SCALES, *, seed: int = 0, thr: float = 4.0, generations: int = 1000
) -> AnchorLadder:
    """YOLOv5's autoanchor, ``utils/autoanchor.py`` ``kmean_anchors`` (Ultralytics, v7.0).

    Its steps: keep boxes with a side of at least 2 px (all boxes when fewer than k remain); k-means on (w, h)
    divided by their standard deviation, the centres multiplied back (YOLOv5 calls scipy's ``kmeans`` with 30
    restarts; here one Lloyd run, see :func:`_kmeans_euclid`); then a genetic evolution of ``generations``
    rounds: each round multiplies every anchor coordinate by
    ``(mask(p=0.9) * U(0,1) * N(0,1) * 0.1 + 1).clip(0.3, 3.0)`` (redrawn until something changes), clips the
    anchors to >= 2 px, and keeps the mutant when :func:`yolov5_fitness` (threshold 1 / ``thr``) improves.
    YOLOv5 uses k = 9 over its three levels; here k = 15 over RetinaNet's five, mapped onto the levels as in the
    module docstring.
    """
    wh = _checked(wh, k)
    keep = (wh >= 2.0).any(axis=1)  # YOLOv5: wh0[(wh0 >= 2.0).any(1)]
    wh = wh[keep] if keep.sum() >= k else wh
    rng = np.random.default_rng(seed)
    s = wh.std(axis=0)
    anchors = _kmeans_euclid(wh / s, k, rng) * s
    best = yolov5_fitness(wh, anchors, thr)
    for _ in range(generations):
        v = np.ones_like(anchors)
        while (v == 1).all():
            v = (rng.random(anchors.shape) < 0.9) * rng.random() * rng.standard_normal(anchors.shape) * 0.1 + 1
            v = v.clip(0.3, 3.0)
        mutant = (anchors * v).clip(min=2.0)
        f = yolov5_fitness(wh, mutant, thr)
        if f > best:
            best, anchors = f, mutant
    return _ladder_from_clusters(anchors[np.argsort(anchors[:, 0] * anchors[:, 1])])


def pyodi_ladder(
    wh: np.ndarray, strides: tuple[int, ...] = (8, 16, 32, 64, 128), *, seed: int = 0, base_scale: float = 4.0
) -> AnchorLadder:
    """pyodi's ``train-config generation`` (Gradiant, pyodi docs, "Procedure").

    As pyodi documents it: each box is assigned to the level whose anchor base size (here RetinaNet's
    ``base_scale * stride``, 32..512) has the highest IoU with it (centred at the origin, square base); the log of
    the ratio between the box's scale sqrt(w * h) and its level's base is clustered by k-means into the shared
    scales, and the log of its aspect ratio h / w into the shared ratios (3 and 3). The result is mmdet's
    ``base_sizes`` (the level bases), ``scales`` (exp of the sorted scale centroids) and ``ratios``; written
    here with the first scale folded into the bases (same sizes), so the first multiplier is 1.
    """
    wh = _checked(wh, max(SCALES, RATIOS))
    rng = np.random.default_rng(seed)
    bases = np.asarray(strides, np.float64) * base_scale
    square = np.stack([bases, bases], axis=1)
    level = _iou_origin(wh, square).argmax(axis=1)
    log_scale = np.log(np.sqrt(wh[:, 0] * wh[:, 1]) / bases[level])
    log_ratio = np.log(wh[:, 1] / wh[:, 0])
    scales = np.sort(np.exp(_kmeans_euclid(log_scale[:, None], SCALES, rng)[:, 0]))
    ratios = np.sort(np.exp(_kmeans_euclid(log_ratio[:, None], RATIOS, rng)[:, 0]))
    bases = bases * scales[0]
    return AnchorLadder(
        bases=tuple(round(float(b), 4) for b in bases),
        scales=tuple(round(float(s / scales[0]), 4) for s in scales),
        ratios=tuple(round(float(r), 4) for r in ratios),
    )
