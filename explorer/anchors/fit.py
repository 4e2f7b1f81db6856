"""Anchor fit: tune RetinaNet's anchors to a dataset under the exact matching rule.

**The objective.** A candidate :class:`~explorer.anchors.grid.AnchorConfig` is scored by the dataset scan itself
(:func:`explorer.dataset.scan.scan_dataset`, equal to torchvision's ``AnchorGenerator`` + ``box_iou`` + ``Matcher``)
with the candidate's anchors and the user's thresholds. From the per-box table, lexicographically:

1. **primary**: the share of (non-crowd) GT boxes with at least one positive anchor at IoU >= ``pos_thresh``,
   *not* counting low-quality rescues (``num_positive > 0`` and not ``low_quality_only``);
2. **secondary**: the median positives per box, then the 10th percentile of positives per box (the lower tail);
3. **tie-breakers**: balance, lower is better: the standard deviation of the per-level shares of positives, then
   the standard deviation over classes of each class's primary share.

:meth:`FitScore.key` is that tuple; a higher key is better. Positives per box count low-quality matches when the
scan's ``low_quality`` is on (they are positives torchvision trains on); the primary does not.

**The search** (:func:`fit_anchors`) works on an :class:`~explorer.anchors.fit_baselines.AnchorLadder`: a
global scale on torchvision's level bases 32..512, a factor per level, n scales per level (multipliers
``2**(span * k / n)``, span 1 = one octave as RetinaNet) and ratios ``centre * spread**j``. Mode ``"head"``
keeps 3 scales x 3 ratios (9 anchors per location, so COCO weights still load); ``"free"`` also searches 1..4
scales and 1, 3 or 5 ratios. It is coordinate descent over a small grid per coordinate, on a seeded subset of
images, until no coordinate improves or the time budget is spent; deterministic for a seed when it converges
within the budget (a search cut by the budget depends on the machine's speed; :attr:`FitResult.stopped_by_budget`
says so). The finalists (the search's winner, torchvision's default and the baselines of
:mod:`explorer.anchors.fit_baselines` that fit the mode) are then scored on the full dataset and the best key
wins, so the reported winner is never worse than a baseline on the full dataset (it can be a baseline when the
subset misled the search); a bootstrap over the subset's images gives a 95 % interval of the winner's primary.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from explorer.anchors import fit_baselines as fb
from explorer.anchors.fit_baselines import AnchorLadder
from explorer.anchors.grid import AnchorConfig, default_config
from explorer.dataset.coco import CocoDataset
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_result import ScanResult

MODES: tuple[str, ...] = ("head", "free")
#: Anchors per location of torchvision's pretrained RetinaNet head.
HEAD_ANCHORS = 9
TV_BASES: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
_GLOBAL = tuple(round(2.0 ** (i / 4), 4) for i in range(-12, 5))  # 0.125 .. 2
_LEVEL = (0.7, 0.8, 0.9, 1.0, 1.12, 1.25, 1.4)
_SPREAD = (1.5, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class FitScore:
    """The objective of one anchor configuration on one dataset (see the module docstring)."""

    covered: float
    median_pos: float
    p10_pos: float
    level_std: float
    class_std: float
    boxes: int

    def key(self) -> tuple[float, ...]:
        """Lexicographic key, higher is better; NaN (no boxes) counts as the worst."""
        vals = (self.covered, self.median_pos, self.p10_pos, -self.level_std, -self.class_std)
        return tuple(-math.inf if v != v else float(v) for v in vals)


def covered_mask(result: ScanResult) -> np.ndarray:
    """(B,) bool: the boxes with a positive at IoU >= pos_thresh, low-quality rescues not counted."""
    b = result.boxes
    return (b["num_positive"].to_numpy() > 0) & ~b["low_quality_only"].to_numpy(bool)


def score_result(result: ScanResult) -> FitScore:
    """:class:`FitScore` of a scan's tables."""
    b = result.boxes
    if not len(b):
        return FitScore(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    pos = b["num_positive"].to_numpy(np.float64)
    cov = covered_mask(result)
    lv = result.levels["positives"].to_numpy(np.float64)
    shares = lv / lv.sum() if lv.sum() else np.zeros_like(lv)
    per_class = [cov[b["category_id"].to_numpy() == c].mean() for c in np.unique(b["category_id"].to_numpy())]
    return FitScore(
        covered=float(cov.mean()),
        median_pos=float(np.median(pos)),
        p10_pos=float(np.percentile(pos, 10)),
        level_std=float(shares.std()),
        class_std=float(np.std(per_class)),
        boxes=len(b),
    )


def evaluate(ds: CocoDataset, anchors: AnchorConfig, scan: ScanConfig) -> tuple[FitScore, ScanResult]:
    """Scan ``ds`` with ``anchors`` (the rest of ``scan`` kept) on the CPU path and score it."""
    result = scan_dataset(ds, dataclasses.replace(scan, anchors=anchors), device="cpu")
    return score_result(result), result


def subset(ds: CocoDataset, indices: np.ndarray) -> CocoDataset:
    """A dataset of the images at ``indices`` (sorted, unique) and their annotations."""
    idx = np.unique(np.asarray(indices, np.int64))
    counts = np.diff(ds.ann_offsets)[idx]
    rows = (
        np.concatenate([np.arange(ds.ann_offsets[i], ds.ann_offsets[i + 1]) for i in idx]).astype(np.int64)
        if len(idx)
        else np.zeros(0, np.int64)
    )
    remap = np.full(ds.num_images, -1, np.int64)
    remap[idx] = np.arange(len(idx))
    return dataclasses.replace(
        ds,
        image_ids=ds.image_ids[idx],
        file_names=[ds.file_names[i] for i in idx],
        heights=ds.heights[idx],
        widths=ds.widths[idx],
        ann_ids=ds.ann_ids[rows],
        ann_image=remap[ds.ann_image[rows]],
        ann_category=ds.ann_category[rows],
        boxes_xyxy=ds.boxes_xyxy[rows],
        areas=ds.areas[rows],
        iscrowd=ds.iscrowd[rows],
        ann_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        problems=ds.problems.iloc[0:0],
    )


def bootstrap_ci(result: ScanResult, *, seed: int = 0, n: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the primary share, resampling images (boxes of an image stay together)."""
    b = result.boxes
    n_img = len(result.images)
    if not len(b) or n_img == 0:
        return (math.nan, math.nan)
    img = b["image_index"].to_numpy()
    cov = np.bincount(img, weights=covered_mask(result).astype(np.float64), minlength=n_img)
    tot = np.bincount(img, minlength=n_img).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, n_img, size=(n, n_img))
    c, t = cov[draws].sum(axis=1), tot[draws].sum(axis=1)
    share = np.divide(c, t, out=np.full(n, np.nan), where=t > 0)
    a = (1.0 - level) / 2.0
    return float(np.nanquantile(share, a)), float(np.nanquantile(share, 1.0 - a))


@dataclass(frozen=True)
class Params:
    """One point of the search space: see :func:`params_ladder`."""

    scale: float = 1.0
    level: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    n_scales: int = 3
    centre: float = 1.0
    spread: float = 2.0
    n_ratios: int = 3
    span: float = 1.0


def params_ladder(p: Params, bases: tuple[float, ...] = TV_BASES) -> AnchorLadder:
    """Bases ``round(base * scale * level[l], 2)``, multipliers ``2**(span * k / n_scales)``, ratios
    ``centre * spread**j`` for j centred on 0 (3 ratios: 1/spread, 1, spread times the centre).

    Example:
        >>> params_ladder(Params()).ratios
        (0.5, 1.0, 2.0)
    """
    lv = tuple(max(1.0, round(b * p.scale * f, 2)) for b, f in zip(bases, p.level, strict=True))
    mult = tuple(round(2.0 ** (p.span * k / p.n_scales), 4) for k in range(p.n_scales))
    half = (p.n_ratios - 1) / 2.0
    ratios = tuple(round(p.centre * p.spread ** (j - half), 4) for j in range(p.n_ratios))
    return AnchorLadder(lv, mult, ratios)


def ladder_config(ladder: AnchorLadder, base: AnchorConfig) -> AnchorConfig:
    """``base`` with the ladder's sizes and ratios (torchvision convention, strides and resize kept)."""
    ratios = tuple(min(max(r, 1e-3), 1e3) for r in ladder.ratios)
    sizes = tuple(tuple(max(1.0, s) for s in level) for level in ladder.sizes())
    return dataclasses.replace(base, sizes=sizes, aspect_ratios=ratios)


def _moves(p: Params, mode: str) -> list[list[Params]]:
    """The candidate values of each coordinate around ``p``."""
    rep = dataclasses.replace
    coords = [[rep(p, scale=s) for s in _GLOBAL]]
    for lvl in range(len(p.level)):
        coords.append([rep(p, level=(*p.level[:lvl], f, *p.level[lvl + 1 :])) for f in _LEVEL])
    coords.append([rep(p, spread=s) for s in _SPREAD])
    coords.append([rep(p, span=s) for s in (0.5, 0.75, 1.0, 1.5, 2.0)])
    coords.append([rep(p, centre=c) for c in (0.5, 0.7071, 1.0, 1.4142, 2.0)])
    if mode == "free":
        coords.append([rep(p, n_scales=n) for n in (1, 2, 3, 4)])
        coords.append([rep(p, n_ratios=n) for n in (1, 3, 5)])
    return coords


@dataclass
class Candidate:
    """A named anchor configuration with its ladder and its scores."""

    name: str
    config: AnchorConfig
    ladder: AnchorLadder
    sample: FitScore | None = None
    full: FitScore | None = None


@dataclass
class FitResult:
    """What :func:`fit_anchors` found.

    Attributes:
        winner: the best finalist on the full dataset; before: torchvision's default (scored on the full set).
        candidates: every finalist, scored on the subset (``sample``) and the full dataset (``full``).
        ci: 95 % bootstrap interval of the winner's primary on the subset; subset_images, evaluations, seconds.
        stopped_by_budget: the search ended because the time budget was spent.
    """

    winner: Candidate
    before: Candidate
    candidates: list[Candidate]
    ci: tuple[float, float]
    subset_images: int
    evaluations: int
    seconds: float
    mode: str
    scan: ScanConfig
    stopped_by_budget: bool = False
    winner_result: ScanResult | None = field(default=None, repr=False)
    before_result: ScanResult | None = field(default=None, repr=False)


ProgressFn = Callable[[str], None]


def _search(
    sub: CocoDataset, scan: ScanConfig, mode: str, deadline: float, say: ProgressFn
) -> tuple[Params, int, bool]:
    """Coordinate descent from torchvision's default point; returns the best params, evaluations, budget hit."""
    cache: dict[AnchorConfig, tuple[float, ...]] = {}

    def key(p: Params) -> tuple[float, ...]:
        cfg = ladder_config(params_ladder(p), scan.anchors)
        if cfg not in cache:
            cache[cfg] = evaluate(sub, cfg, scan)[0].key()
        return cache[cfg]

    best = Params()
    best_key = key(best)
    improved, rounds = True, 0
    while improved:
        improved, rounds = False, rounds + 1
        for options in _moves(best, mode):
            for cand in options:
                if time.perf_counter() > deadline:
                    return best, len(cache), True
                k = key(cand)
                if k > best_key:
                    best, best_key, improved = cand, k, True
        say(f"round {rounds}: primary {best_key[0]:.4f}, median pos {best_key[1]:g} ({len(cache)} configs)")
    return best, len(cache), False


def baseline_candidates(boxes_wh: np.ndarray, base: AnchorConfig, *, seed: int = 0) -> list[Candidate]:
    """torchvision's default and the three published recipes of :mod:`explorer.anchors.fit_baselines` (a recipe
    that cannot run, too few boxes, is left out)."""
    tv = AnchorLadder(TV_BASES, (1.0, 1.2599, 1.5874), (0.5, 1.0, 2.0))
    out = [Candidate("torchvision default", dataclasses.replace(base, sizes=default_config().sizes), tv)]
    recipes = (
        ("mmdet k-means (1 - IoU)", lambda: fb.kmeans_iou(boxes_wh, seed=seed)),
        ("YOLOv5 autoanchor", lambda: fb.yolov5_autoanchor(boxes_wh, seed=seed)),
        ("pyodi", lambda: fb.pyodi_ladder(boxes_wh, base.strides, seed=seed)),
    )
    for name, make in recipes:
        try:
            ladder = make()
        except ValueError:
            continue
        out.append(Candidate(name, ladder_config(ladder, base), ladder))
    return out


def fit_anchors(
    ds: CocoDataset,
    scan: ScanConfig | None = None,
    *,
    mode: str = "head",
    budget_s: float = 60.0,
    seed: int = 0,
    subset_images: int = 500,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Fit anchors to ``ds`` (see the module docstring for the objective and the search).

    Args:
        ds: the dataset; scan: thresholds, low-quality rule and the input-size rules (``scan.anchors``: strides,
            min/max size; its sizes and ratios are what is replaced). mode: ``"head"`` or ``"free"``.
        budget_s: seconds for the search on the subset (the finalists' full scans come after it).
        seed: the subset draw, the baselines' k-means and the bootstrap; subset_images: images searched on.

    Raises:
        ValueError: an unknown mode, a negative budget or seed, anchors of other than 5 levels, or a dataset
            without boxes.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not (budget_s >= 0 and math.isfinite(budget_s)):
        raise ValueError(f"budget_s must be a finite number >= 0, got {budget_s}")
    if scan is not None and scan.anchors.num_levels != len(TV_BASES):
        raise ValueError(f"the fit searches RetinaNet's {len(TV_BASES)} levels, got {scan.anchors.num_levels}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    scan = scan or ScanConfig()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_sub = min(ds.num_images, max(1, subset_images))
    sub = subset(ds, np.sort(rng.choice(ds.num_images, n_sub, replace=False)))
    _, sub_default = evaluate(sub, dataclasses.replace(scan.anchors, sizes=default_config().sizes), scan)
    if not len(sub_default.boxes):
        raise ValueError("the dataset has no (non-crowd) boxes to fit anchors to")
    say(f"searching on {n_sub} of {ds.num_images} images ({mode} mode, budget {budget_s:g} s)")
    best, evals, hit = _search(sub, scan, mode, t0 + budget_s, say)
    wh = sub_default.boxes[["x2", "y2"]].to_numpy(np.float64) - sub_default.boxes[["x1", "y1"]].to_numpy(np.float64)
    cands = [Candidate("fit", ladder_config(params_ladder(best), scan.anchors), params_ladder(best))]
    cands += [c for c in baseline_candidates(wh, scan.anchors, seed=seed) if _fits_mode(c.config, mode)]
    return _finish(ds, sub, scan, cands, mode, n_sub, evals, hit, t0, say, seed)


def _fits_mode(cfg: AnchorConfig, mode: str) -> bool:
    return mode == "free" or all(a == HEAD_ANCHORS for a in cfg.anchors_per_location())


def _finish(
    ds: CocoDataset,
    sub: CocoDataset,
    scan: ScanConfig,
    cands: list[Candidate],
    mode: str,
    n_sub: int,
    evals: int,
    hit: bool,
    t0: float,
    say: ProgressFn,
    seed: int,
) -> FitResult:
    """Score the finalists on the subset and the full dataset, pick the best full key."""
    results = {}
    for c in cands:
        c.sample = evaluate(sub, c.config, scan)[0]
        c.full, results[c.name] = evaluate(ds, c.config, scan)
        say(f"{c.name}: primary {c.full.covered:.4f} on all {ds.num_images} images")
    winner = max(cands, key=lambda c: c.full.key())  # max keeps the first of equal keys: the fit on a tie
    before = next(c for c in cands if c.name == "torchvision default")
    sub_winner = evaluate(sub, winner.config, scan)[1]
    return FitResult(
        winner=winner,
        before=before,
        candidates=cands,
        ci=bootstrap_ci(sub_winner, seed=seed),
        subset_images=n_sub,
        evaluations=evals + 2 * len(cands),
        seconds=time.perf_counter() - t0,
        mode=mode,
        scan=scan,
        stopped_by_budget=hit,
        winner_result=results[winner.name],
        before_result=results[before.name],
    )
