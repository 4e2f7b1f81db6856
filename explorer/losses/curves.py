"""Tables behind the Loss lab's "Classification" and "Soft targets" tabs: loss and gradient curves, QFL/VFL grids
and line cuts, DFL bins.

Each function evaluates the losses of :mod:`explorer.losses.classification` and
:mod:`explorer.losses.soft_targets` on a grid and returns a tidy ``pandas.DataFrame`` (or a small dataclass of arrays
for heatmaps) that a figure builder plots and a page offers as CSV. Computation is in float64 torch with the
closed-form gradients. The "Box losses" tab's tables are in :mod:`explorer.losses.box_curves`.

Example:
    >>> df = classification_curves(["CE", "focal"], gammas=(2.0,), alpha=-1, n=5)
    >>> sorted(df["curve"].unique())
    ['CE', 'FL γ=2']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from explorer.losses import classification as cls
from explorer.losses import soft_targets as soft
from explorer.losses.checks import check_count

__all__ = [
    "CLASSIFICATION_LOSSES",
    "SoftTargetGrid",
    "classification_curves",
    "dfl_bins",
    "dfl_loss_vs_mean",
    "focal_reduction",
    "soft_target_cut",
    "soft_target_grid",
]

F64 = torch.float64

#: Classification losses the curves can show.
CLASSIFICATION_LOSSES: tuple[str, ...] = ("CE", "α-CE", "focal", "FL*")
#: Columns of :func:`classification_curves`.
_CURVE_COLUMNS = ["curve", "loss_name", "gamma", "x", "p_t", "logit", "loss", "grad", "factor"]

#: One classification curve before it becomes rows: label, loss name, gamma (NaN if none), loss, dL/dx.
_Curve = tuple[str, str, float, torch.Tensor, torch.Tensor]


def _fmt(v: float) -> str:
    return f"{v:g}"


# ---------------------------------------------------------------------------------------------------------------
# Classification curves (the focal-loss paper's Figure 1)
# ---------------------------------------------------------------------------------------------------------------


def classification_curves(
    losses: Sequence[str] = CLASSIFICATION_LOSSES,
    *,
    gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 5.0),
    alpha: float = 0.25,
    focal_alpha: float | None = None,
    fl_star_gamma: float = 2.0,
    fl_star_beta: float = 1.0,
    axis: str = "p_t",
    target: int = 1,
    n: int = 1000,
    logit_range: tuple[float, float] = (-8.0, 8.0),
) -> pd.DataFrame:
    """Loss, gradient with respect to the logit and modulating factor of classification losses on a grid.

    Args:
        losses: names from :data:`CLASSIFICATION_LOSSES`. "focal" gives one curve per gamma in ``gammas``.
        gammas: focal gammas to overlay (the paper's Figure 1 uses 0, 0.5, 1, 2, 5).
        alpha: positive-class weight in [0, 1] used by alpha-CE (and by focal loss unless ``focal_alpha`` is set).
        focal_alpha: alpha of the focal curves, or -1 for no alpha (as in the paper's Figure 1); None = ``alpha``.
        fl_star_gamma, fl_star_beta: FL*'s gamma* and beta*.
        axis: "p_t" (x from 0.001 to 0.999, the paper's axis) or "logit" (x over ``logit_range``).
        target: the example's class (1 foreground, 0 background); it sets alpha_t and the sign of the gradient.
        n: number of grid points.
        logit_range: x range of the logit axis.

    Returns:
        Long table with columns ``curve`` (label), ``loss_name``, ``gamma``, ``x``, ``p_t``, ``logit``, ``loss``,
        ``grad`` (dL/dx) and ``factor`` (loss / CE: the modulating factor, alpha_t included).
    """
    unknown = [name for name in losses if name not in CLASSIFICATION_LOSSES]
    if unknown:
        raise ValueError(f"unknown classification loss(es) {unknown}; choose from {list(CLASSIFICATION_LOSSES)}")
    if axis not in ("p_t", "logit"):
        raise ValueError(f"axis={axis!r} is invalid: use 'p_t' or 'logit'")
    if target not in (0, 1):
        raise ValueError(f"target={target} is invalid: it must be 0 or 1")
    check_count(n)
    x_axis, p_t, x = _curve_grid(axis, target, n, logit_range)
    y = torch.full_like(x, float(target))
    ce = cls.ce_loss(x, y)
    fa = alpha if focal_alpha is None else focal_alpha
    star = (fl_star_gamma, fl_star_beta)
    curves = [
        curve
        for name in losses
        for curve in _curves_of(name, x, y, ce, alpha=alpha, focal_alpha=fa, gammas=gammas, fl_star=star)
    ]
    xs, pts, logits, ce_np = x_axis.numpy(), p_t.numpy(), x.numpy(), ce.numpy()
    frames = [
        pd.DataFrame(
            {
                "curve": label,
                "loss_name": name,
                "gamma": g,
                "x": xs,
                "p_t": pts,
                "logit": logits,
                "loss": loss.numpy(),
                "grad": grad.numpy(),
                "factor": loss.numpy() / ce_np,
            }
        )
        for label, name, g, loss, grad in curves
    ]
    if not frames:
        return pd.DataFrame(columns=_CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _curve_grid(
    axis: str, target: int, n: int, logit_range: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The grid of :func:`classification_curves`: (x axis, p_t, logit), each (n,) float64.

    On the "p_t" axis p_t runs from 0.001 to 0.999 and the logit follows; on the "logit" axis the logit runs over
    ``logit_range`` and p_t follows (for ``target``).
    """
    if axis == "p_t":
        p_t = torch.linspace(1e-3, 1 - 1e-3, n, dtype=F64)
        return p_t, p_t, cls.logit_from_pt(p_t, target)
    lo, hi = logit_range
    if not lo < hi:
        raise ValueError(f"logit_range={logit_range} is invalid: it must be (low, high) with low < high")
    x = torch.linspace(lo, hi, n, dtype=F64)
    return x, torch.sigmoid(x if target == 1 else -x), x


def _curves_of(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    ce: torch.Tensor,
    *,
    alpha: float,
    focal_alpha: float,
    gammas: Sequence[float],
    fl_star: tuple[float, float],
) -> list[_Curve]:
    """The curves of one loss of :data:`CLASSIFICATION_LOSSES` (one per gamma for "focal") at logits ``x``."""
    if name == "CE":
        return [("CE", name, math.nan, ce, cls.ce_grad(x, y))]
    if name == "α-CE":
        label = f"α-CE α={_fmt(alpha)}" if alpha >= 0 else "α-CE (α off)"
        return [(label, name, math.nan, cls.alpha_ce_loss(x, y, alpha), cls.alpha_ce_grad(x, y, alpha))]
    if name == "focal":
        fa = focal_alpha
        return [
            (
                f"FL γ={_fmt(g)}" + (f" α={_fmt(fa)}" if fa >= 0 else ""),
                name,
                float(g),
                cls.focal_loss(x, y, fa, g),
                cls.focal_loss_grad(x, y, fa, g),
            )
            for g in gammas
        ]
    g, b = fl_star
    label = f"FL* γ*={_fmt(g)} β*={_fmt(b)}"
    return [(label, name, float(g), cls.fl_star_loss(x, y, g, b), cls.fl_star_grad(x, y, g, b))]


def focal_reduction(p_t: float, gamma: float, alpha_t: float = 1.0) -> float:
    """How many times smaller focal loss is than CE at ``p_t``: CE / FL = 1 / (alpha_t (1 - p_t)^gamma).

    Example:
        >>> round(focal_reduction(0.9, 2.0), 6)
        100.0
    """
    if not 0 < p_t < 1:
        raise ValueError(f"p_t={p_t} is invalid: it must lie strictly inside (0, 1)")
    if not (gamma >= 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma={gamma} is invalid: it must be a finite number >= 0")
    if not 0 < alpha_t <= 1:
        raise ValueError(f"alpha_t={alpha_t} is invalid: it must lie in (0, 1]")
    return 1.0 / (alpha_t * (1.0 - p_t) ** gamma)


# ---------------------------------------------------------------------------------------------------------------
# Soft-target losses: QFL and VFL heatmaps and line cuts, DFL bins
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftTargetGrid:
    """Loss and gradient of QFL and VFL over (predicted probability, target IoU).

    Attributes:
        pred: (P,) predicted probabilities sigma(x), in (0, 1).
        target: (T,) target IoU values in [0, 1].
        qfl, qfl_grad, vfl, vfl_grad: (T, P) float64 loss and dL/dx (rows: target, columns: prediction).
    """

    pred: np.ndarray
    target: np.ndarray
    qfl: np.ndarray
    qfl_grad: np.ndarray
    vfl: np.ndarray
    vfl_grad: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Long table: ``target``, ``pred``, ``qfl``, ``qfl_grad``, ``vfl``, ``vfl_grad``."""
        tt, pp = np.meshgrid(self.target, self.pred, indexing="ij")
        return pd.DataFrame(
            {
                "target": tt.ravel(),
                "pred": pp.ravel(),
                "qfl": self.qfl.ravel(),
                "qfl_grad": self.qfl_grad.ravel(),
                "vfl": self.vfl.ravel(),
                "vfl_grad": self.vfl_grad.ravel(),
            }
        )


def soft_target_grid(
    *, beta: float = 2.0, alpha: float = 0.75, gamma: float = 2.0, n_pred: int = 101, n_target: int = 101
) -> SoftTargetGrid:
    """QFL (beta) and VFL (alpha, gamma) over a grid of predictions and targets.

    Args:
        beta: QFL exponent.
        alpha, gamma: VFL negative weight and exponent.
        n_pred: predictions, from 0.005 to 0.995.
        n_target: targets, from 0 to 1 (the first row, target 0, is a negative).

    Returns:
        A :class:`SoftTargetGrid`.
    """
    check_count(n_pred, "n_pred")
    check_count(n_target, "n_target")
    pred = torch.linspace(0.005, 0.995, n_pred, dtype=F64)
    target = torch.linspace(0.0, 1.0, n_target, dtype=F64)
    tt, pp = torch.meshgrid(target, pred, indexing="ij")
    x = torch.logit(pp)
    return SoftTargetGrid(
        pred=pred.numpy(),
        target=target.numpy(),
        qfl=soft.qfl_loss(x, tt, beta).numpy(),
        qfl_grad=soft.qfl_grad(x, tt, beta).numpy(),
        vfl=soft.varifocal_loss(x, tt, alpha, gamma).numpy(),
        vfl_grad=soft.varifocal_grad(x, tt, alpha, gamma).numpy(),
    )


def soft_target_cut(
    target: float, *, beta: float = 2.0, alpha: float = 0.75, gamma: float = 2.0, n: int = 1000
) -> pd.DataFrame:
    """QFL, VFL and plain BCE against the prediction for one target IoU (a line cut of the heatmaps).

    Returns:
        Long table: ``loss_name`` ("QFL", "VFL", "BCE"), ``pred``, ``loss``, ``grad`` (dL/dx).
    """
    if not 0 <= target <= 1:
        raise ValueError(f"target={target} is invalid: it must lie in [0, 1]")
    check_count(n)
    pred = torch.linspace(0.001, 0.999, n, dtype=F64)
    x = torch.logit(pred)
    y = torch.full_like(x, target)
    rows = {
        f"QFL β={_fmt(beta)}": (soft.qfl_loss(x, y, beta), soft.qfl_grad(x, y, beta)),
        f"VFL α={_fmt(alpha)} γ={_fmt(gamma)}": (
            soft.varifocal_loss(x, y, alpha, gamma),
            soft.varifocal_grad(x, y, alpha, gamma),
        ),
        "BCE": (cls.ce_loss(x, y), cls.ce_grad(x, y)),
    }
    return pd.concat(
        [
            pd.DataFrame({"loss_name": name, "pred": pred.numpy(), "loss": lo.numpy(), "grad": gr.numpy()})
            for name, (lo, gr) in rows.items()
        ],
        ignore_index=True,
    )


def _check_dfl(target: float, n_bins: int, pred_width: float) -> None:
    check_count(n_bins, "n_bins", low=1)
    if not 0 <= target <= n_bins:
        raise ValueError(f"target={target} is invalid: it must lie in [0, n_bins] = [0, {n_bins}]")
    if not pred_width > 0:
        raise ValueError(f"pred_width={pred_width} is invalid: it must be > 0")


def _bump_logits(n_bins: int, mean: float | torch.Tensor, width: float) -> torch.Tensor:
    """Bin logits of a discretised Gaussian bump centred on ``mean`` with standard deviation ``width`` (bins).

    A float ``mean`` gives (n_bins + 1,) logits; (M,) centres give (M, n_bins + 1), one bump per row.
    """
    j = torch.arange(n_bins + 1, dtype=F64)
    return -0.5 * ((j - torch.as_tensor(mean, dtype=F64).unsqueeze(-1)) / width) ** 2


def dfl_bins(
    target: float, *, n_bins: int = 16, pred_mean: float | None = None, pred_width: float = 1.0
) -> pd.DataFrame:
    """The DFL picture for one target: the two-bin target distribution against a predicted distribution.

    The predicted distribution is a softmax of a Gaussian bump (centre ``pred_mean``, standard deviation
    ``pred_width`` bins), a stand-in for a regression head's output.

    Args:
        target: continuous target in [0, n_bins] (bin units).
        n_bins: n, the largest bin index (mmdet GFL: reg_max = 16, so 17 bins).
        pred_mean: centre of the predicted bump (default: the target).
        pred_width: spread of the predicted bump in bins, > 0.

    Returns:
        One row per bin: ``bin``, ``target_weight`` (w_j), ``pred_prob`` (S_j), ``grad`` (dDFL/dz_j = S_j - w_j),
        and the scalar columns ``loss`` (DFL), ``pred_expectation`` (sum_j j S_j) and ``min_loss`` (the DFL of the
        ideal prediction S = w, the entropy of w).
    """
    _check_dfl(target, n_bins, pred_width)
    mean = target if pred_mean is None else pred_mean
    z = _bump_logits(n_bins, mean, pred_width)
    y = torch.tensor(target, dtype=F64)
    w = soft.dfl_target_weights(y, n_bins)
    s = torch.softmax(z, -1)
    w_pos = w[w > 0]
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins + 1),
            "target_weight": w.numpy(),
            "pred_prob": s.numpy(),
            "grad": soft.dfl_grad(z, y).numpy(),
            "loss": soft.dfl_loss(z, y).item(),
            "pred_expectation": float((torch.arange(n_bins + 1, dtype=F64) * s).sum()),
            "min_loss": float(-(w_pos * torch.log(w_pos)).sum()),
        }
    )


def dfl_loss_vs_mean(target: float, *, n_bins: int = 16, pred_width: float = 1.0, n: int = 400) -> pd.DataFrame:
    """DFL of the Gaussian-bump prediction as its centre sweeps [0, n_bins], for a fixed target.

    Returns:
        Columns ``pred_mean``, ``loss``.
    """
    check_count(n)
    _check_dfl(target, n_bins, pred_width)
    means = torch.linspace(0.0, float(n_bins), n, dtype=F64)
    loss = soft.dfl_loss(_bump_logits(n_bins, means, pred_width), torch.full((n,), float(target), dtype=F64))
    return pd.DataFrame({"pred_mean": means.numpy(), "loss": loss.numpy()})
