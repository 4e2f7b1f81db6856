"""Tables behind the Loss lab's figures: loss and gradient curves, soft-target grids, DFL bins, box-loss paths.

Each function evaluates the losses of :mod:`explorer.losses.functions` on a grid and returns a tidy
``pandas.DataFrame`` (or
a small dataclass of arrays for heatmaps) that a figure builder plots and a page offers as CSV. Computation is in
float64 torch; gradients use the closed forms where they exist and autograd for the box-geometry losses.

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

from explorer.losses import functions as L

__all__ = [
    "BOX_LOSSES",
    "BOX_PATHS",
    "CLASSIFICATION_LOSSES",
    "SoftTargetGrid",
    "box_loss_curves",
    "box_pair_table",
    "classification_curves",
    "dfl_bins",
    "dfl_loss_vs_mean",
    "focal_reduction",
    "smooth_l1_curves",
    "soft_target_cut",
    "soft_target_grid",
]

F64 = torch.float64

#: Classification losses the curves can show.
CLASSIFICATION_LOSSES: tuple[str, ...] = ("CE", "α-CE", "focal", "FL*")
#: Box losses of the IoU family, in plotting order.
BOX_LOSSES: tuple[str, ...] = ("1 − IoU", "−ln IoU", "GIoU", "DIoU", "CIoU", "RIoU")
#: Ways to move a unit predicted box against the unit ground-truth box [0, 0, 1, 1] so that IoU sweeps (0, 1].
BOX_PATHS: dict[str, str] = {
    "shift": "same size, slid diagonally away from the ground truth",
    "scale": "same centre, shrunk",
    "aspect": "same centre and area, stretched wider",
}


def _fmt(v: float) -> str:
    return f"{v:g}"


def _check_n(n: int, name: str = "n", low: int = 2) -> None:
    if not isinstance(n, int | np.integer) or n < low:
        raise ValueError(f"{name}={n} is invalid: it must be an integer >= {low}")


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
    _check_n(n)
    if axis == "p_t":
        p_t = torch.linspace(1e-3, 1 - 1e-3, n, dtype=F64)
        x = L.logit_from_pt(p_t, target)
        x_axis = p_t
    else:
        lo, hi = logit_range
        if not lo < hi:
            raise ValueError(f"logit_range={logit_range} is invalid: it must be (low, high) with low < high")
        x = torch.linspace(lo, hi, n, dtype=F64)
        p_t = torch.sigmoid(x if target == 1 else -x)
        x_axis = x
    y = torch.full_like(x, float(target))
    ce = L.ce_loss(x, y)
    curves: list[tuple[str, str, float, torch.Tensor, torch.Tensor]] = []
    for name in losses:
        if name == "CE":
            curves.append(("CE", name, math.nan, ce, L.ce_grad(x, y)))
        elif name == "α-CE":
            label = f"α-CE α={_fmt(alpha)}" if alpha >= 0 else "α-CE (α off)"
            curves.append((label, name, math.nan, L.alpha_ce_loss(x, y, alpha), L.alpha_ce_grad(x, y, alpha)))
        elif name == "focal":
            fa = alpha if focal_alpha is None else focal_alpha
            for g in gammas:
                label = f"FL γ={_fmt(g)}" + (f" α={_fmt(fa)}" if fa >= 0 else "")
                curves.append((label, name, float(g), L.focal_loss(x, y, fa, g), L.focal_loss_grad(x, y, fa, g)))
        else:
            g, b = fl_star_gamma, fl_star_beta
            curves.append(
                (
                    f"FL* γ*={_fmt(g)} β*={_fmt(b)}",
                    name,
                    float(g),
                    L.fl_star_loss(x, y, g, b),
                    L.fl_star_grad(x, y, g, b),
                )
            )
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
        return pd.DataFrame(columns=["curve", "loss_name", "gamma", "x", "p_t", "logit", "loss", "grad", "factor"])
    return pd.concat(frames, ignore_index=True)


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
    _check_n(n_pred, "n_pred")
    _check_n(n_target, "n_target")
    pred = torch.linspace(0.005, 0.995, n_pred, dtype=F64)
    target = torch.linspace(0.0, 1.0, n_target, dtype=F64)
    tt, pp = torch.meshgrid(target, pred, indexing="ij")
    x = torch.logit(pp)
    return SoftTargetGrid(
        pred=pred.numpy(),
        target=target.numpy(),
        qfl=L.qfl_loss(x, tt, beta).numpy(),
        qfl_grad=L.qfl_grad(x, tt, beta).numpy(),
        vfl=L.varifocal_loss(x, tt, alpha, gamma).numpy(),
        vfl_grad=L.varifocal_grad(x, tt, alpha, gamma).numpy(),
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
    _check_n(n)
    pred = torch.linspace(0.001, 0.999, n, dtype=F64)
    x = torch.logit(pred)
    y = torch.full_like(x, target)
    rows = {
        f"QFL β={_fmt(beta)}": (L.qfl_loss(x, y, beta), L.qfl_grad(x, y, beta)),
        f"VFL α={_fmt(alpha)} γ={_fmt(gamma)}": (
            L.varifocal_loss(x, y, alpha, gamma),
            L.varifocal_grad(x, y, alpha, gamma),
        ),
        "BCE": (L.ce_loss(x, y), L.ce_grad(x, y)),
    }
    return pd.concat(
        [
            pd.DataFrame({"loss_name": name, "pred": pred.numpy(), "loss": lo.numpy(), "grad": gr.numpy()})
            for name, (lo, gr) in rows.items()
        ],
        ignore_index=True,
    )


def _check_dfl(target: float, n_bins: int, pred_width: float) -> None:
    _check_n(n_bins, "n_bins", low=1)
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
    w = L.dfl_target_weights(y, n_bins)
    s = torch.softmax(z, -1)
    w_pos = w[w > 0]
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins + 1),
            "target_weight": w.numpy(),
            "pred_prob": s.numpy(),
            "grad": L.dfl_grad(z, y).numpy(),
            "loss": L.dfl_loss(z, y).item(),
            "pred_expectation": float((torch.arange(n_bins + 1, dtype=F64) * s).sum()),
            "min_loss": float(-(w_pos * torch.log(w_pos)).sum()),
        }
    )


def dfl_loss_vs_mean(target: float, *, n_bins: int = 16, pred_width: float = 1.0, n: int = 400) -> pd.DataFrame:
    """DFL of the Gaussian-bump prediction as its centre sweeps [0, n_bins], for a fixed target.

    Returns:
        Columns ``pred_mean``, ``loss``.
    """
    _check_n(n)
    _check_dfl(target, n_bins, pred_width)
    means = torch.linspace(0.0, float(n_bins), n, dtype=F64)
    loss = L.dfl_loss(_bump_logits(n_bins, means, pred_width), torch.full((n,), float(target), dtype=F64))
    return pd.DataFrame({"pred_mean": means.numpy(), "loss": loss.numpy()})


# ---------------------------------------------------------------------------------------------------------------
# Box losses
# ---------------------------------------------------------------------------------------------------------------


def _path_boxes(path: str, iou: torch.Tensor) -> torch.Tensor:
    """Predicted boxes (n, 4) whose IoU with the unit box [0, 0, 1, 1] is ``iou``, along ``path``."""
    if path == "shift":
        # Diagonal shift s: inter (1-s)^2, union 2 - (1-s)^2  =>  (1-s)^2 = 2u / (1+u).
        s = 1 - torch.sqrt(2 * iou / (1 + iou))
        return torch.stack([s, s, s + 1, s + 1], dim=-1)
    if path == "scale":
        # Concentric square of side r: IoU = r^2.
        r = torch.sqrt(iou)
        lo, hi = 0.5 - r / 2, 0.5 + r / 2
        return torch.stack([lo, lo, hi, hi], dim=-1)
    if path == "aspect":
        # Concentric a x 1/a box (a >= 1): inter 1/a, union 2 - 1/a  =>  a = (1 + u) / (2u).
        a = (1 + iou) / (2 * iou)
        return torch.stack([0.5 - a / 2, 0.5 - 0.5 / a, 0.5 + a / 2, 0.5 + 0.5 / a], dim=-1)
    raise ValueError(f"path={path!r} is invalid: choose from {list(BOX_PATHS)}")


def _box_loss_fns(riou_beta: float, riou_k: float, ciou_gated: bool) -> dict[str, object]:
    return {
        "1 − IoU": L.iou_loss,
        "−ln IoU": L.log_iou_loss,
        "GIoU": L.giou_loss,
        "DIoU": L.diou_loss,
        "CIoU": lambda b, g: L.ciou_loss(b, g, gated=ciou_gated),
        "RIoU": lambda b, g: L.riou_loss(b, g, beta=riou_beta, k=riou_k),
    }


def box_loss_curves(
    path: str = "shift",
    *,
    losses: Sequence[str] = BOX_LOSSES,
    riou_beta: float = L.DEFAULT_RIOU_BETA,
    riou_k: float = L.DEFAULT_RIOU_K,
    ciou_gated: bool = False,
    n: int = 1000,
) -> pd.DataFrame:
    """IoU-family losses and their gradient magnitudes as a predicted box moves along ``path``.

    The ground truth is the unit box [0, 0, 1, 1]; the prediction follows one of :data:`BOX_PATHS` so that IoU
    sweeps [0.001, 1]. GIoU, DIoU and CIoU depend on more than IoU, hence the path.

    Args:
        path: "shift", "scale" or "aspect".
        losses: names from :data:`BOX_LOSSES`.
        riou_beta, riou_k: RIoU reconstruction parameters.
        ciou_gated: use mmdet's IoU > 0.5 gated CIoU instead of torchvision's.
        n: number of points.

    Returns:
        Long table: ``loss_name``, ``iou``, ``loss``, ``grad_box`` (L2 norm of dL/d(predicted x1, y1, x2, y2), by
        autograd; unit-box scale) and ``grad_iou`` (|dL/dIoU| for losses that are functions of IoU alone, else NaN).
    """
    unknown = [name for name in losses if name not in BOX_LOSSES]
    if unknown:
        raise ValueError(f"unknown box loss(es) {unknown}; choose from {list(BOX_LOSSES)}")
    _check_n(n)
    iou = torch.linspace(1e-3, 1.0, n, dtype=F64)
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=F64).expand(n, 4)
    base = _path_boxes(path, iou)
    fns = _box_loss_fns(riou_beta, riou_k, ciou_gated)
    grad_iou = {
        "1 − IoU": torch.ones_like(iou),
        "−ln IoU": 1 / iou,
        "RIoU": -L.riou_grad_iou(iou, riou_beta, riou_k),
    }
    nan = np.full(n, np.nan)
    frames = []
    for name in losses:
        pred = base.clone().requires_grad_(True)
        loss = fns[name](pred, gt)
        (grad,) = torch.autograd.grad(loss.sum(), pred)
        frames.append(
            pd.DataFrame(
                {
                    "loss_name": name,
                    "iou": iou.numpy(),
                    "loss": loss.detach().numpy(),
                    "grad_box": grad.norm(dim=-1).numpy(),
                    "grad_iou": grad_iou[name].numpy() if name in grad_iou else nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def smooth_l1_curves(betas: Sequence[float] = (0.0, 0.11, 1.0), *, span: float = 2.0, n: int = 1000) -> pd.DataFrame:
    """Smooth L1 (beta = 0 is L1) and its gradient against the offset d in [-span, span].

    Returns:
        Long table: ``curve``, ``beta``, ``offset``, ``loss``, ``grad``.
    """
    _check_n(n)
    if not span > 0:
        raise ValueError(f"span={span} is invalid: it must be > 0")
    if not betas:
        raise ValueError("betas is empty: give at least one beta")
    d = torch.linspace(-span, span, n, dtype=F64)
    frames = []
    for b in betas:
        label = "L1 (β=0)" if b == 0 else f"smooth L1 β={_fmt(b)}"
        frames.append(
            pd.DataFrame(
                {
                    "curve": label,
                    "beta": float(b),
                    "offset": d.numpy(),
                    "loss": L.smooth_l1_loss(d, b).numpy(),
                    "grad": L.smooth_l1_grad(d, b).numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def box_pair_table(
    pred_xyxy: Sequence[float],
    gt_xyxy: Sequence[float],
    *,
    riou_beta: float = L.DEFAULT_RIOU_BETA,
    riou_k: float = L.DEFAULT_RIOU_K,
) -> pd.DataFrame:
    """Every overlap measure and box loss for one predicted box against one ground-truth box.

    Args:
        pred_xyxy: predicted box (x1, y1, x2, y2) with x2 > x1, y2 > y1.
        gt_xyxy: ground-truth box, same format.
        riou_beta, riou_k: RIoU reconstruction parameters.

    Returns:
        Columns ``measure``, ``value`` (the similarity: IoU, GIoU, DIoU, CIoU; NaN for RIoU, which is only a loss),
        ``loss``.

    Example:
        >>> t = box_pair_table([0, 0, 4, 2], [1, 0, 3, 4])
        >>> [round(v, 6) for v in t["loss"][:5]]
        [0.666667, 0.916667, 0.697917, 0.731668, 0.697917]
    """
    pred = torch.tensor([list(pred_xyxy)], dtype=F64)
    gt = torch.tensor([list(gt_xyxy)], dtype=F64)
    if pred.shape != (1, 4) or gt.shape != (1, 4):
        raise ValueError(f"boxes must be 4 numbers (x1, y1, x2, y2), got {list(pred_xyxy)} and {list(gt_xyxy)}")
    for name, b in (("predicted", pred), ("ground-truth", gt)):
        if not bool(torch.isfinite(b).all()) or not (b[0, 2] > b[0, 0] and b[0, 3] > b[0, 1]):
            raise ValueError(f"the {name} box {b[0].tolist()} must have x2 > x1 and y2 > y1")
    iou = L.box_iou_pairs(pred, gt).item()
    rows = [
        ("IoU", iou, L.iou_loss(pred, gt).item()),
        ("GIoU", L.giou(pred, gt).item(), L.giou_loss(pred, gt).item()),
        ("DIoU", L.diou(pred, gt).item(), L.diou_loss(pred, gt).item()),
        ("CIoU (torchvision)", L.ciou(pred, gt).item(), L.ciou_loss(pred, gt).item()),
        ("CIoU (mmdet, gated)", L.ciou(pred, gt, gated=True).item(), L.ciou_loss(pred, gt, gated=True).item()),
        ("−ln IoU", math.nan, L.log_iou_loss(pred, gt).item()),
        ("RIoU (reconstruction)", math.nan, L.riou_loss(pred, gt, beta=riou_beta, k=riou_k).item()),
    ]
    return pd.DataFrame(rows, columns=["measure", "value", "loss"])
