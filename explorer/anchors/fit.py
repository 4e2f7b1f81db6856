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

**The search** (:func:`fit_anchors`) works on an :class:`~explorer.anchors.fit_baselines.AnchorLadder` (a base
size per level, scale multipliers and ratios shared by the levels). It starts from the best, on a seeded subset of
images, of torchvision's default and the baselines of :mod:`explorer.anchors.fit_baselines` that fit the mode, and
runs coordinate descent with steps relative to the current ladder: every base times 0.25..2, one level's base
times 0.7..1.4, the spread of the multipliers and of the ratios (an exponent 0.5..2), the ratios' centre (times
0.5..2). Mode ``"head"`` keeps 3 scales x 3 ratios (9 anchors per location, so COCO weights still load); ``"free"``
also searches 1..4 scales and 1, 3 or 5 ratios. A move is taken only when it raises the key, until no move does or
the time budget is spent; deterministic for a seed when it converges within the budget (a search cut by the budget
depends on the machine's speed; :attr:`FitResult.stopped_by_budget` says so). The finalists (the search's winner,
torchvision's default and the baselines) are then scored on the full dataset and the best key wins, so the
reported winner is never worse than a baseline on the full dataset (it can be a baseline when the subset misled
the search); a bootstrap over the subset's images gives a 95 % interval of the winner's primary.
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
from explorer.dataset.scan_cpu import warm_up
from explorer.dataset.scan_result import ScanResult

MODES: tuple[str, ...] = ("head", "free")
#: Anchors per location of torchvision's pretrained RetinaNet head.
HEAD_ANCHORS = 9
TV_BASES: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
#: torchvision's default anchors as a ladder (its sizes truncate these products to integers).
TV_LADDER = AnchorLadder(TV_BASES, (1.0, 1.2599, 1.5874), (0.5, 1.0, 2.0))
# The search's steps, each relative to the current ladder.
_GLOBAL = tuple(round(2.0 ** (i / 4), 4) for i in range(-8, 5) if i)  # x0.25 .. x2 for every base
_LEVEL = (0.7, 0.8, 0.9, 1.12, 1.25, 1.4)  # one level's base
_POWER = (0.5, 0.75, 1.25, 1.5, 2.0)  # spread of the multipliers or of the ratios (exponent)
_CENTRE = (0.5, 0.7071, 1.4142, 2.0)  # the ratios' centre


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


def ladder_config(ladder: AnchorLadder, base: AnchorConfig) -> AnchorConfig:
    """``base`` with the ladder's sizes and ratios (torchvision convention, strides and resize kept)."""
    ratios = tuple(min(max(r, 1e-3), 1e3) for r in ladder.ratios)
    sizes = tuple(tuple(max(1.0, s) for s in level) for level in ladder.sizes())
    return dataclasses.replace(base, sizes=sizes, aspect_ratios=ratios)


def _ladder(bases: tuple[float, ...], scales: tuple[float, ...], ratios: tuple[float, ...]) -> AnchorLadder:
    """A ladder with rounded values (bases to 0.01 px, multipliers and ratios to 4 decimals): clean snippets."""
    return AnchorLadder(
        tuple(max(1.0, round(float(b), 2)) for b in bases),
        tuple(max(1e-3, round(float(m), 4)) for m in scales),
        tuple(min(max(round(float(r), 4), 1e-3), 1e3) for r in ratios),
    )


def _spread(values: tuple[float, ...], n: int, fallback: float) -> tuple[float, ...]:
    """``n`` values in geometric progression over the range of ``values``, centred on their geometric mean (the
    step of ``values``, or ``fallback`` when there is one value)."""
    v = np.asarray(values, np.float64)
    step = (v.max() / v.min()) ** (1.0 / (len(v) - 1)) if len(v) > 1 else fallback
    centre = float(np.exp(np.log(v).mean()))
    return tuple(centre * step ** (j - (n - 1) / 2.0) for j in range(n))


def _moves(ld: AnchorLadder, mode: str) -> list[list[AnchorLadder]]:
    """The candidate ladders of each coordinate around ``ld``, all relative to it: the global scale, each level's
    base, the spread of the scale multipliers and of the ratios, the ratios' centre; in free mode also the number
    of scales (1-4) and of ratios (1, 3, 5)."""
    b, m, r = ld.bases, ld.scales, ld.ratios
    m0 = m[0]
    centre = float(np.exp(np.log(r).mean()))
    coords = [[_ladder(tuple(x * f for x in b), m, r) for f in _GLOBAL]]
    for lvl in range(len(b)):
        coords.append([_ladder((*b[:lvl], b[lvl] * f, *b[lvl + 1 :]), m, r) for f in _LEVEL])
    coords.append([_ladder(b, tuple(m0 * (x / m0) ** p for x in m), r) for p in _POWER])
    coords.append([_ladder(b, m, tuple(centre * (x / centre) ** p for x in r)) for p in _POWER])
    coords.append([_ladder(b, m, tuple(x * f for x in r)) for f in _CENTRE])
    if mode == "free":
        first = m0 / _spread(m, len(m), 2.0)[0]  # keep the smallest multiplier where it is
        coords.append([_ladder(b, tuple(x * first for x in _spread(m, n, 2.0 ** (1 / 3))), r) for n in (1, 2, 3, 4)])
        coords.append([_ladder(b, m, _spread(r, n, 2.0)) for n in (1, 3, 5)])
    return [[c for c in options if c != ld] for options in coords]


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
    sub: CocoDataset, scan: ScanConfig, seeds: list[AnchorLadder], mode: str, deadline: float, say: ProgressFn
) -> tuple[AnchorLadder, int, bool]:
    """Coordinate descent from the best of ``seeds`` on the subset; returns the best ladder, the configurations
    scanned and whether the budget ended it. Each accepted move raises the key, so it ends."""
    cache: dict[AnchorConfig, tuple[float, ...]] = {}

    def key(ld: AnchorLadder) -> tuple[float, ...]:
        cfg = ladder_config(ld, scan.anchors)
        if cfg not in cache:
            cache[cfg] = evaluate(sub, cfg, scan)[0].key()
        return cache[cfg]

    best = seeds[0]
    best_key = key(best)
    for seed in seeds[1:]:  # max keeps the first of equal keys: torchvision's default on a tie
        if (k := key(seed)) > best_key:
            best, best_key = seed, k
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
    out = [Candidate("torchvision default", dataclasses.replace(base, sizes=default_config().sizes), TV_LADDER)]
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
    warm_up()  # a first compile of the scan's kernel (about 10 s once per machine) is not the search's time
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_sub = min(ds.num_images, max(1, subset_images))
    sub = subset(ds, np.sort(rng.choice(ds.num_images, n_sub, replace=False)))
    _, sub_default = evaluate(sub, dataclasses.replace(scan.anchors, sizes=default_config().sizes), scan)
    if not len(sub_default.boxes):
        raise ValueError("the dataset has no (non-crowd) boxes to fit anchors to")
    say(f"searching on {n_sub} of {ds.num_images} images ({mode} mode, budget {budget_s:g} s)")
    wh = sub_default.boxes[["x2", "y2"]].to_numpy(np.float64) - sub_default.boxes[["x1", "y1"]].to_numpy(np.float64)
    baselines = [c for c in baseline_candidates(wh, scan.anchors, seed=seed) if _fits_mode(c.config, mode)]
    best, evals, hit = _search(sub, scan, [c.ladder for c in baselines], mode, t0 + budget_s, say)
    cands = [Candidate("fit", ladder_config(best, scan.anchors), best), *baselines]
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
