"""Where the loss goes: a simulated batch of anchors and the share of loss and gradient per group.

The focal-loss paper's central claim is that with cross-entropy the many easy negatives, each with a small loss,
add up to most of the total loss and gradient, and that focal loss moves the budget to the hard examples. This
module simulates one dense-detector batch: N anchors split into positives, hard negatives and easy negatives, each
group with its own Beta distribution of the predicted foreground probability p. It then reports, for CE, alpha-CE
and focal loss, how much of the total loss and of the total gradient magnitude |dL/dx| each group contributes, and
the focal-loss paper's Figure 4: the cumulative distribution of normalized loss for positives and for negatives.

Everything is vectorised numpy in float64 and deterministic for a given seed.

Example:
    >>> spec = BatchSpec(n_anchors=10_000, seed=0)
    >>> table = loss_budget(spec, alpha=0.25, gamma=2.0)
    >>> ce = table[table["loss"] == "CE"].set_index("group")["loss_share"]
    >>> fl = table[table["loss"] == "focal"].set_index("group")["loss_share"]
    >>> bool(ce["easy negative"] > 0.5 and fl["easy negative"] < 0.05)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explorer.labels import EASY_NEGATIVE, HARD_NEGATIVE, POSITIVE, AnchorLabel

__all__ = [
    "GROUPS",
    "GROUP_LABELS",
    "LOSSES",
    "MAX_ANCHORS",
    "BatchSpec",
    "GroupSpec",
    "SimulatedBatch",
    "loss_budget",
    "normalized_loss_cdf",
    "per_anchor_losses",
    "probability_histogram",
    "simulate_batch",
]

#: The simulated groups, in the order a batch stores them (labels and codes of :mod:`explorer.labels`).
GROUP_LABELS: tuple[AnchorLabel, ...] = (POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE)
#: Their display names, in the same order.
GROUPS: tuple[str, ...] = tuple(label.display for label in GROUP_LABELS)
#: The losses compared in the budget.
LOSSES: tuple[str, ...] = ("CE", "α-CE", "focal")
#: Largest simulated batch.
MAX_ANCHORS = 10_000_000
#: Probabilities are clipped to [P_EPS, 1 - P_EPS] so that log p_t stays finite.
P_EPS = 1e-12


@dataclass(frozen=True)
class GroupSpec:
    """One group of anchors: its share of the batch and the Beta(a, b) law of its predicted foreground probability.

    Attributes:
        share: fraction of the N anchors in [0, 1] (ignored for easy negatives, which take the rest).
        a, b: Beta parameters > 0 of p = sigma(logit); mean a / (a + b).
    """

    share: float
    a: float
    b: float

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"group share={self.share} is invalid: it must lie in [0, 1]")
        for name, v in (("a", self.a), ("b", self.b)):
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"Beta parameter {name}={v} is invalid: it must be a finite number > 0")

    @property
    def mean(self) -> float:
        """Mean predicted foreground probability a / (a + b)."""
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class BatchSpec:
    """A simulated batch. Defaults: 100,000 anchors, 0.5% positives, 2% hard negatives, 97.5% easy negatives.

    The defaults mimic a RetinaNet image during training: positives are mostly recognised (mean p 0.67), hard
    negatives look somewhat like objects (mean p 0.29), and easy negatives are confidently background (mean p 0.02).

    Attributes:
        n_anchors: total anchors N, 1 .. 10,000,000.
        positive: share and Beta law of the positives' p.
        hard_negative: share and Beta law of the hard negatives' p.
        easy_negative: Beta law of the easy negatives' p; their share is whatever is left.
        seed: seed of the numpy generator.
    """

    n_anchors: int = 100_000
    positive: GroupSpec = field(default_factory=lambda: GroupSpec(0.005, 6.0, 3.0))
    hard_negative: GroupSpec = field(default_factory=lambda: GroupSpec(0.02, 2.0, 5.0))
    easy_negative: GroupSpec = field(default_factory=lambda: GroupSpec(0.975, 1.0, 50.0))
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_anchors, int | np.integer) or not 1 <= self.n_anchors <= MAX_ANCHORS:
            raise ValueError(f"n_anchors={self.n_anchors} is invalid: it must be an integer in [1, {MAX_ANCHORS:,}]")
        if self.positive.share + self.hard_negative.share > 1 + 1e-12:
            raise ValueError(
                f"positive share {self.positive.share} + hard-negative share {self.hard_negative.share} exceeds 1"
            )

    def counts(self) -> tuple[int, int, int]:
        """Anchors per group (positives, hard negatives, easy negatives), summing to n_anchors."""
        n_pos = round(self.n_anchors * self.positive.share)
        n_hard = min(round(self.n_anchors * self.hard_negative.share), self.n_anchors - n_pos)
        return n_pos, n_hard, self.n_anchors - n_pos - n_hard


@dataclass(frozen=True)
class SimulatedBatch:
    """Predicted probabilities and group codes of a simulated batch.

    Attributes:
        p: (N,) float64 predicted foreground probability, clipped to [1e-12, 1 - 1e-12].
        group: (N,) int8 label code (:class:`explorer.labels.AnchorLabel`), anchors stored group by group in the
            order of :data:`GROUP_LABELS` (positives, hard negatives, easy negatives).
        counts: anchors per group, in the same order.
    """

    p: np.ndarray
    group: np.ndarray
    counts: tuple[int, int, int]

    def slices(self) -> tuple[slice, slice, slice]:
        """The index range of each group (anchors are stored group by group)."""
        a, b, _ = self.counts
        return slice(0, a), slice(a, a + b), slice(a + b, len(self.p))

    @property
    def target(self) -> np.ndarray:
        """(N,) float64 binary target: 1 for positives."""
        return (self.group == POSITIVE).astype(np.float64)


def simulate_batch(spec: BatchSpec) -> SimulatedBatch:
    """Draws the predicted probabilities of every anchor of ``spec`` (deterministic for a given seed).

    Args:
        spec: the batch to simulate.

    Returns:
        The batch, anchors ordered by group.
    """
    rng = np.random.default_rng(spec.seed)
    counts = spec.counts()
    parts, codes = [], []
    groups = (spec.positive, spec.hard_negative, spec.easy_negative)
    for label, count, g in zip(GROUP_LABELS, counts, groups, strict=True):
        parts.append(rng.beta(g.a, g.b, size=count))
        codes.append(np.full(count, label, dtype=np.int8))
    p = np.clip(np.concatenate(parts), P_EPS, 1 - P_EPS)
    return SimulatedBatch(p=p, group=np.concatenate(codes), counts=counts)


def _check_gamma(gamma: float) -> None:
    if not (gamma >= 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma={gamma} is invalid: it must be a finite number >= 0")


def _check_focal(alpha: float, gamma: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha} is invalid: it must lie in [0, 1]")
    _check_gamma(gamma)


def _as_batch(data: BatchSpec | SimulatedBatch) -> SimulatedBatch:
    if isinstance(data, SimulatedBatch):
        return data
    if isinstance(data, BatchSpec):
        return simulate_batch(data)
    raise ValueError(f"expected a BatchSpec or a SimulatedBatch, got {type(data).__name__}")


def _wrongness(batch: SimulatedBatch) -> np.ndarray:
    """q = 1 - p_t: the probability given to the wrong class, (N,) float64."""
    return np.where(batch.group == POSITIVE, 1.0 - batch.p, batch.p)


def per_anchor_losses(batch: SimulatedBatch, *, alpha: float = 0.25, gamma: float = 2.0) -> dict[str, np.ndarray]:
    """Per-anchor loss and gradient magnitude |dL/dx| for CE, alpha-CE and focal loss.

    Args:
        batch: a simulated batch.
        alpha: focal/alpha-CE weight of the positives in [0, 1] (negatives get 1 - alpha).
        gamma: focusing parameter >= 0.

    Returns:
        ``{"CE": loss, "CE grad": |grad|, "α-CE": ..., "α-CE grad": ..., "focal": ..., "focal grad": ...}``, each
        (N,) float64. The gradients are the closed forms of reference.md 1.1-1.3.
    """
    _check_focal(alpha, gamma)
    q = _wrongness(batch)
    p_t = 1.0 - q
    ce = -np.log1p(-q)
    alpha_t = np.where(batch.group == POSITIVE, alpha, 1.0 - alpha)
    mod = q**gamma
    focal_grad = alpha_t * mod * (q - gamma * p_t * np.log1p(-q))  # |alpha_t (1-p_t)^g (g p_t log p_t + p_t - 1)|
    return {
        "CE": ce,
        "CE grad": q,
        "α-CE": alpha_t * ce,
        "α-CE grad": alpha_t * q,
        "focal": alpha_t * mod * ce,
        "focal grad": focal_grad,
    }


def _group_sums(q: np.ndarray, gamma: float) -> tuple[float, float, float, float]:
    """Sums over one group of CE, |dCE/dx|, (1-p_t)^gamma CE and |d/dx of that|, from q = 1 - p_t."""
    if q.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    log_pt = np.log1p(-q)
    mod = q * q if gamma == 2 else (np.ones_like(q) if gamma == 0 else q**gamma)
    ce_sum = -float(log_pt.sum())
    focal_sum = -float(np.dot(mod, log_pt))
    # |(1-p_t)^g (g p_t log p_t + p_t - 1)| = (1-p_t)^g (q - g (1-q) log p_t)
    focal_grad_sum = float(np.dot(mod, q)) - gamma * float(np.dot(mod * (1.0 - q), log_pt))
    return ce_sum, float(q.sum()), focal_sum, focal_grad_sum


def loss_budget(spec: BatchSpec | SimulatedBatch, *, alpha: float = 0.25, gamma: float = 2.0) -> pd.DataFrame:
    """Share of the total loss and of the total gradient magnitude per group, for CE, alpha-CE and focal loss.

    Args:
        spec: the batch to simulate (or an already simulated batch).
        alpha: weight of the positives in alpha-CE and focal loss, in [0, 1].
        gamma: focal loss gamma >= 0.

    Returns:
        One row per (loss, group), 9 rows, columns ``loss``, ``group``, ``count``, ``loss_sum``, ``loss_share``,
        ``mean_loss``, ``grad_sum``, ``grad_share``, ``loss_per_positive`` (the group's loss sum divided by the number
        of positives, the detectors' normalizer). Equal to the sums of :func:`per_anchor_losses`, computed group by
        group without per-anchor temporaries.
    """
    _check_focal(alpha, gamma)
    batch = _as_batch(spec)
    counts = batch.counts
    sums = []  # per group: (CE, CE grad, focal w/o alpha, focal grad w/o alpha)
    for label, sl in zip(GROUP_LABELS, batch.slices(), strict=True):
        p = batch.p[sl]
        sums.append(_group_sums(1.0 - p if label == POSITIVE else p, gamma))
    alpha_t = (alpha, 1.0 - alpha, 1.0 - alpha)
    per_loss = {
        "CE": [(s[0], s[1]) for s in sums],
        "α-CE": [(a * s[0], a * s[1]) for a, s in zip(alpha_t, sums, strict=True)],
        "focal": [(a * s[2], a * s[3]) for a, s in zip(alpha_t, sums, strict=True)],
    }
    n_pos = max(counts[GROUP_LABELS.index(POSITIVE)], 1)
    rows = []
    for name in LOSSES:
        total_loss = sum(v[0] for v in per_loss[name])
        total_grad = sum(v[1] for v in per_loss[name])
        for i, group in enumerate(GROUPS):
            loss_sum, grad_sum = per_loss[name][i]
            rows.append(
                {
                    "loss": name,
                    "group": group,
                    "count": counts[i],
                    "loss_sum": loss_sum,
                    "loss_share": loss_sum / total_loss if total_loss > 0 else 0.0,
                    "mean_loss": loss_sum / counts[i] if counts[i] else 0.0,
                    "grad_sum": grad_sum,
                    "grad_share": grad_sum / total_grad if total_grad > 0 else 0.0,
                    "loss_per_positive": loss_sum / n_pos,
                }
            )
    return pd.DataFrame(rows)


def _cdf_grid(n_points: int) -> np.ndarray:
    """Fractions in [0, 1], uniform plus a dense tail near 1 where focal loss concentrates."""
    tail = 1.0 - np.logspace(-5, -1, max(n_points // 4, 2))
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, n_points), tail]))


def normalized_loss_cdf(
    spec: BatchSpec | SimulatedBatch, gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0), *, n_points: int = 401
) -> pd.DataFrame:
    """The focal-loss paper's Figure 4 on the simulated batch.

    For positives and for negatives (hard and easy together) separately, and for each gamma: the focal loss of every
    anchor, normalized to sum to 1, sorted from lowest to highest, and its cumulative sum against the fraction of
    anchors. alpha does not matter here (it is a constant within a group). The sort order is the same for every
    gamma (focal loss rises with 1 - p_t), so each group is sorted once.

    Args:
        spec: the batch to simulate (or an already simulated batch).
        gammas: focusing parameters >= 0.
        n_points: points of the uniform part of the fraction grid (a dense tail near 1 is added).

    Returns:
        Columns ``group`` ("positive" / "negative"), ``gamma``, ``fraction`` (of the group's anchors, 0..1),
        ``cumulative_loss`` (0..1).
    """
    if not gammas:
        raise ValueError("gammas is empty: give at least one gamma")
    for g in gammas:
        _check_gamma(g)
    if n_points < 2:
        raise ValueError(f"n_points={n_points} is invalid: it must be >= 2")
    batch = _as_batch(spec)
    q = _wrongness(batch)
    grid = _cdf_grid(n_points)
    frames = []
    for group, mask in (("positive", batch.group == POSITIVE), ("negative", batch.group != POSITIVE)):
        qs = np.sort(q[mask])
        n = qs.size
        if n == 0:
            continue
        ce = -np.log1p(-qs)
        x = np.arange(n + 1) / n
        for g in gammas:
            loss = ce * qs**g if g else ce
            cum = np.concatenate([[0.0], np.cumsum(loss)])
            cum = cum / cum[-1] if cum[-1] > 0 else x
            frames.append(
                pd.DataFrame(
                    {"group": group, "gamma": float(g), "fraction": grid, "cumulative_loss": np.interp(grid, x, cum)}
                )
            )
    return pd.concat(frames, ignore_index=True)


def probability_histogram(spec: BatchSpec | SimulatedBatch, *, bins: int = 50) -> pd.DataFrame:
    """Histogram of the predicted foreground probability per group (what the simulated batch looks like).

    Returns:
        Columns ``group``, ``bin_left``, ``bin_right``, ``count``, ``fraction`` (of the group).
    """
    if bins < 1:
        raise ValueError(f"bins={bins} is invalid: it must be >= 1")
    batch = _as_batch(spec)
    edges = np.linspace(0.0, 1.0, bins + 1)
    frames = []
    for label in GROUP_LABELS:
        group = label.display
        p = batch.p[batch.group == label]
        counts, _ = np.histogram(p, bins=edges)
        frames.append(
            pd.DataFrame(
                {
                    "group": group,
                    "bin_left": edges[:-1],
                    "bin_right": edges[1:],
                    "count": counts,
                    "fraction": counts / max(p.size, 1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
