"""Loss functions of dense detection, elementwise, in torch, with closed-form gradients.

Every loss takes tensors (float32 or float64) and returns the per-element loss with no reduction, so it can be
plotted, summed or back-propagated. The arithmetic follows torchvision 0.29.1 where torchvision has the loss
(``sigmoid_focal_loss``, ``generalized_box_iou_loss``, ``distance_box_iou_loss``, ``complete_box_iou_loss``), so the
values and autograd gradients agree with it; the others follow mmdet 3.3.0 and the papers (see
``shared/reference.md`` sections 1-3). The ``*_grad`` functions are the closed-form derivatives of the matching
loss with respect to its first argument (the logit, the bin logits, the offset or the IoU); they are checked
against autograd in the tests.

Conventions: ``targets`` y are in {0, 1} for the binary losses (soft targets in [0, 1] work too, except in the
closed-form focal/FL* gradients which need binary targets); p = sigmoid(x); p_t = p if y = 1 else 1 - p;
alpha_t = alpha * y + (1 - alpha) * (1 - y) (focal alpha weights the positives).

Example:
    >>> x = torch.tensor([2.0, -1.0], dtype=torch.float64)
    >>> y = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> [round(v, 6) for v in focal_loss(x, y).tolist()]
    [0.000451, 0.175467]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_RIOU_BETA",
    "DEFAULT_RIOU_K",
    "alpha_ce_grad",
    "alpha_ce_loss",
    "box_iou_pairs",
    "ce_grad",
    "ce_loss",
    "ciou",
    "ciou_loss",
    "dfl_grad",
    "dfl_loss",
    "dfl_target_weights",
    "diou",
    "diou_loss",
    "fl_star_grad",
    "fl_star_loss",
    "focal_grad_pt",
    "focal_loss",
    "focal_loss_grad",
    "focal_loss_pt",
    "giou",
    "giou_loss",
    "iou_loss",
    "l1_grad",
    "l1_loss",
    "log_iou_loss",
    "logit_from_pt",
    "modulating_factor",
    "qfl_grad",
    "qfl_loss",
    "riou_grad_iou",
    "riou_loss",
    "riou_loss_from_iou",
    "smooth_l1_grad",
    "smooth_l1_loss",
    "varifocal_grad",
    "varifocal_loss",
]

#: Rectified IoU breakpoint (the paper's beta) and slope of the rising branch (reference.md section 3).
DEFAULT_RIOU_BETA = 0.95
DEFAULT_RIOU_K = 2.0

_FLOAT_TYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks two tensors have the same shape; casts the second to the first's floating dtype."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"{names[0]} and {names[1]} must be torch tensors, got {type(a).__name__}, {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} shape {tuple(a.shape)} differs from {names[1]} shape {tuple(b.shape)}")
    if a.dtype not in _FLOAT_TYPES:
        raise ValueError(f"{names[0]} must be float32 or float64, got {a.dtype}")
    return a, b.to(a.dtype)


def _check_unit_interval(t: torch.Tensor, name: str) -> None:
    if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")


def _check_alpha(alpha: float, *, allow_disable: bool = True) -> None:
    if not (0 <= alpha <= 1) and not (allow_disable and alpha == -1):
        hint = " or -1 to disable it" if allow_disable else ""
        raise ValueError(f"alpha={alpha} is invalid: alpha must be in [0, 1]{hint}")


def _check_nonnegative(value: float, name: str) -> None:
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{name}={value} is invalid: it must be a finite number >= 0")


def _alpha_t(alpha: float, targets: torch.Tensor) -> torch.Tensor | float:
    """alpha * y + (1 - alpha) * (1 - y); 1.0 when alpha = -1 (disabled)."""
    if alpha < 0:
        return 1.0
    return alpha * targets + (1 - alpha) * (1 - targets)


def _sign(targets: torch.Tensor) -> torch.Tensor:
    """s = 2y - 1: the paper's {-1, +1} label."""
    return 2 * targets - 1


def _check_soft_pair(logits: torch.Tensor, soft_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_check_pair` for logits and soft targets, which must also lie in [0, 1]."""
    logits, soft_targets = _check_pair(logits, soft_targets, ("logits", "soft_targets"))
    _check_unit_interval(soft_targets, "soft_targets")
    return logits, soft_targets


def _check_fl_star_gamma(gamma: float) -> None:
    if not gamma > 0 or math.isinf(gamma):
        raise ValueError(f"gamma={gamma} is invalid: FL* needs a finite gamma > 0")


def _check_binary(targets: torch.Tensor, name: str = "targets") -> None:
    if targets.numel() and not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError(f"{name} must be 0 or 1 for this closed form (soft targets: use autograd on the loss)")


# ---------------------------------------------------------------------------------------------------------------
# Binary classification: CE, alpha-CE, focal, FL*
# ---------------------------------------------------------------------------------------------------------------


def ce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, -log p_t, elementwise (focal-loss paper eq. 1-2).

    Args:
        logits: (...) float32/float64 logits x.
        targets: (...) same shape, in [0, 1] (binary or soft).

    Returns:
        (...) loss, same dtype as ``logits``.

    Example:
        >>> round(ce_loss(torch.tensor([0.0]), torch.tensor([1.0])).item(), 6)
        0.693147
    """
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def ce_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dCE/dx = p - y (reference.md 1.1). Shapes as :func:`ce_loss`."""
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    return torch.sigmoid(logits) - targets


def alpha_ce_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    """alpha-balanced cross-entropy, -alpha_t * log p_t (paper eq. 3).

    Args:
        logits: (...) float logits.
        targets: (...) same shape, in [0, 1].
        alpha: weight of the positive class, in [0, 1]; the negatives get 1 - alpha. -1 disables it (plain CE).

    Returns:
        (...) loss.
    """
    _check_alpha(alpha)
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    return _alpha_t(alpha, targets) * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def alpha_ce_grad(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    """d(alpha-CE)/dx = alpha_t * (p - y). Arguments as :func:`alpha_ce_loss`."""
    _check_alpha(alpha)
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    return _alpha_t(alpha, targets) * (torch.sigmoid(logits) - targets)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss, -alpha_t * (1 - p_t)^gamma * log p_t (paper eq. 4-5), torchvision's arithmetic.

    The modulating factor is not detached, as in torchvision, mmdet and fvcore. gamma = 0 gives alpha-CE.

    Args:
        logits: (...) float logits.
        targets: (...) same shape, in [0, 1].
        alpha: positive-class weight in [0, 1], or -1 to disable alpha. Default 0.25.
        gamma: focusing parameter >= 0. Default 2.

    Returns:
        (...) loss; equal to ``torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma)``.

    Example:
        >>> round(focal_loss(torch.tensor([4.0]), torch.tensor([0.0])).item(), 6)
        2.90618
    """
    _check_alpha(alpha)
    _check_nonnegative(gamma, "gamma")
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return _alpha_t(alpha, targets) * (ce * ((1 - p_t) ** gamma))


def focal_loss_grad(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """dFL/dx = alpha_t * s * (1 - p_t)^gamma * (gamma * p_t * log p_t + p_t - 1), s = 2y - 1 (paper App. B eq. 10).

    Args:
        logits: (...) float logits.
        targets: (...) binary targets (0 or 1).
        alpha: as :func:`focal_loss`.
        gamma: as :func:`focal_loss`.

    Returns:
        (...) derivative of the focal loss with respect to the logit.
    """
    _check_alpha(alpha)
    _check_nonnegative(gamma, "gamma")
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    _check_binary(targets)
    s = _sign(targets)
    x_t = s * logits
    p_t = torch.sigmoid(x_t)
    log_p_t = F.logsigmoid(x_t)
    return _alpha_t(alpha, targets) * s * (1 - p_t) ** gamma * (gamma * p_t * log_p_t + p_t - 1)


def fl_star_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, beta: float = 1.0) -> torch.Tensor:
    """FL*, -log(p*_t) / gamma with p*_t = sigmoid(gamma * x_t + beta) (paper App. A, eqs. 6-8).

    No alpha inside the formula (the paper applied alpha = 0.25 outside it in its experiments).

    Args:
        logits: (...) float logits x.
        targets: (...) binary targets; x_t = s * x with s = 2y - 1.
        gamma: slope gamma*, > 0. Default 2.
        beta: shift beta*. Default 1.

    Returns:
        (...) loss.
    """
    _check_fl_star_gamma(gamma)
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    x_t = _sign(targets) * logits
    return F.softplus(-(gamma * x_t + beta)) / gamma


def fl_star_grad(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, beta: float = 1.0) -> torch.Tensor:
    """dFL*/dx = s * (p*_t - 1) (paper eq. 11). Arguments as :func:`fl_star_loss` (binary targets)."""
    _check_fl_star_gamma(gamma)
    logits, targets = _check_pair(logits, targets, ("logits", "targets"))
    _check_binary(targets)
    s = _sign(targets)
    return s * (torch.sigmoid(gamma * s * logits + beta) - 1)


# --- p_t space helpers (the x axis of the paper's Figure 1) ---------------------------------------------------


def logit_from_pt(p_t: torch.Tensor, target: int = 1) -> torch.Tensor:
    """The logit x whose p_t is ``p_t`` for an example of class ``target`` (x = ±logit(p_t)).

    Args:
        p_t: (...) probabilities of the true class, in (0, 1).
        target: 1 (foreground, x = logit(p_t)) or 0 (background, x = -logit(p_t)).

    Returns:
        (...) logits, same dtype.

    Example:
        >>> [round(v, 6) for v in logit_from_pt(torch.tensor([0.5, 0.9], dtype=torch.float64), target=0).tolist()]
        [-0.0, -2.197225]
    """
    if target not in (0, 1):
        raise ValueError(f"target={target} is invalid: it must be 0 or 1")
    if p_t.numel() and (bool((p_t <= 0).any()) or bool((p_t >= 1).any())):
        raise ValueError("p_t must lie strictly inside (0, 1)")
    x = torch.logit(p_t)
    return x if target == 1 else -x


def modulating_factor(p_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p_t)^gamma, the focal term that shrinks the loss of well-classified examples. (...) -> (...)."""
    _check_nonnegative(gamma, "gamma")
    return (1 - p_t) ** gamma


def focal_loss_pt(p_t: torch.Tensor, gamma: float = 2.0, alpha_t: float = 1.0) -> torch.Tensor:
    """Focal loss as a function of p_t: -alpha_t * (1 - p_t)^gamma * log p_t (the paper's Figure 1 with alpha_t=1).

    Args:
        p_t: (...) probability of the true class, in (0, 1].
        gamma: focusing parameter >= 0.
        alpha_t: class weight of the example (alpha for positives, 1 - alpha for negatives).

    Returns:
        (...) loss.

    Example:
        >>> round(focal_loss_pt(torch.tensor([0.9], dtype=torch.float64), gamma=2).item(), 8)
        0.00105361
    """
    _check_nonnegative(gamma, "gamma")
    return -alpha_t * (1 - p_t) ** gamma * torch.log(p_t)


def focal_grad_pt(p_t: torch.Tensor, gamma: float = 2.0, alpha_t: float = 1.0) -> torch.Tensor:
    """dFL/dp_t = alpha_t * [gamma * (1 - p_t)^(gamma - 1) * log p_t - (1 - p_t)^gamma / p_t] (reference.md 1.3).

    At p_t = 1 the value is 0 for gamma > 1, -alpha_t for gamma in {0, 1}, and the one-sided limit 0 is returned
    for 0 < gamma < 1 (where the first term is 0 * inf). Shapes as :func:`focal_loss_pt`.
    """
    _check_nonnegative(gamma, "gamma")
    q = 1 - p_t
    log_p = torch.log(p_t)
    first = torch.where(log_p == 0, torch.zeros_like(p_t), gamma * q ** (gamma - 1) * log_p)
    return alpha_t * (first - q**gamma / p_t)


# ---------------------------------------------------------------------------------------------------------------
# Soft-target losses: QFL, Varifocal, DFL
# ---------------------------------------------------------------------------------------------------------------


def qfl_loss(logits: torch.Tensor, soft_targets: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Quality Focal Loss, -|y - sigma|^beta * [(1 - y) log(1 - sigma) + y log sigma] (GFL paper eq. 2).

    The factor |y - sigma|^beta is not detached (as in mmdet and the authors' code).

    Args:
        logits: (...) float logits.
        soft_targets: (...) IoU-like targets y in [0, 1] (0 for negatives).
        beta: exponent >= 0. Default 2 (the paper's best).

    Returns:
        (...) loss.
    """
    _check_nonnegative(beta, "beta")
    logits, soft_targets = _check_soft_pair(logits, soft_targets)
    scale = (soft_targets - torch.sigmoid(logits)).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none") * scale


def qfl_grad(logits: torch.Tensor, soft_targets: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """dQFL/dx = beta |y-s|^(beta-1) sign(s-y) s(1-s) BCE + |y-s|^beta (s - y), s = sigma(x) (reference.md 1.5).

    Where sigma = y exactly, the first term is taken as 0 (its limit for beta > 1). Arguments as :func:`qfl_loss`.
    """
    _check_nonnegative(beta, "beta")
    logits, soft_targets = _check_soft_pair(logits, soft_targets)
    s = torch.sigmoid(logits)
    d = s - soft_targets
    bce = F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none")
    ad = d.abs()
    safe = torch.where(ad > 0, ad, torch.ones_like(ad))
    first = torch.where(ad > 0, beta * safe ** (beta - 1) * torch.sign(d) * s * (1 - s) * bce, torch.zeros_like(d))
    return first + ad**beta * d


def varifocal_loss(
    logits: torch.Tensor,
    soft_targets: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
    *,
    iou_weighted: bool = True,
) -> torch.Tensor:
    """Varifocal loss (VarifocalNet; mmdet ``varifocal_loss``).

    VFL(p, q) = -q [q log p + (1 - q) log(1 - p)] if q > 0, and -alpha p^gamma log(1 - p) if q = 0. Here alpha
    weights the negatives (unlike focal loss). The weight is not detached, as in mmdet.

    Args:
        logits: (...) float logits.
        soft_targets: (...) IoU targets q in [0, 1] (0 = negative).
        alpha: negative weight in [0, 1]. Default 0.75.
        gamma: exponent >= 0. Default 2.
        iou_weighted: weight positives by q (mmdet default True); False weights them by 1.

    Returns:
        (...) loss.
    """
    _check_alpha(alpha, allow_disable=False)
    _check_nonnegative(gamma, "gamma")
    logits, soft_targets = _check_soft_pair(logits, soft_targets)
    p = torch.sigmoid(logits)
    pos = (soft_targets > 0).to(logits.dtype)
    pos_weight = soft_targets if iou_weighted else torch.ones_like(soft_targets)
    weight = pos_weight * pos + alpha * (p - soft_targets).abs().pow(gamma) * (1 - pos)
    return F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none") * weight


def varifocal_grad(
    logits: torch.Tensor,
    soft_targets: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
    *,
    iou_weighted: bool = True,
) -> torch.Tensor:
    """dVFL/dx: q (p - q) for q > 0 (p - q unweighted); alpha p^gamma [p - gamma (1-p) log(1-p)] for q = 0.

    Arguments as :func:`varifocal_loss`.
    """
    _check_alpha(alpha, allow_disable=False)
    _check_nonnegative(gamma, "gamma")
    logits, soft_targets = _check_soft_pair(logits, soft_targets)
    p = torch.sigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    neg = alpha * p**gamma * (p - gamma * (1 - p) * log_1mp)
    pos_weight = soft_targets if iou_weighted else torch.ones_like(soft_targets)
    return torch.where(soft_targets > 0, pos_weight * (p - soft_targets), neg)


def _dfl_weights(bin_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Target distribution w over the n + 1 bins: w_i = y_{i+1} - y, w_{i+1} = y - y_i. (..., n+1)."""
    if not isinstance(bin_logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError("bin_logits and target must be torch tensors")
    if bin_logits.dtype not in _FLOAT_TYPES:
        raise ValueError(f"bin_logits must be float32 or float64, got {bin_logits.dtype}")
    if bin_logits.ndim < 1 or bin_logits.shape[-1] < 2:
        raise ValueError(f"bin_logits must have shape (..., n+1) with n >= 1, got {tuple(bin_logits.shape)}")
    if tuple(target.shape) != tuple(bin_logits.shape[:-1]):
        raise ValueError(f"target shape {tuple(target.shape)} must be bin_logits shape without its last axis")
    n = bin_logits.shape[-1] - 1
    target = target.to(bin_logits.dtype)
    if target.numel() and (bool((target < 0).any()) or bool((target > n).any())):
        raise ValueError(
            f"DFL targets must lie in [0, n] = [0, {n}], got [{target.min().item()}, {target.max().item()}]"
        )
    # A target exactly at n uses bins (n-1, n) with weights (0, 1): no out-of-range right bin, no clamping needed.
    left = torch.floor(target).clamp(max=n - 1).long()
    w_left = (left + 1).to(target.dtype) - target
    w_right = target - left.to(target.dtype)
    w = torch.zeros_like(bin_logits)
    w.scatter_(-1, left.unsqueeze(-1), w_left.unsqueeze(-1))
    w.scatter_(-1, (left + 1).unsqueeze(-1), w_right.unsqueeze(-1))
    return w


def dfl_target_weights(target: torch.Tensor, n_bins: int) -> torch.Tensor:
    """The ideal bin distribution of a DFL target: y_{i+1} - y on bin floor(y), y - y_i on the next bin.

    Args:
        target: (...) float targets in [0, n_bins].
        n_bins: n, the largest bin index (n + 1 bins).

    Returns:
        (..., n+1) weights summing to 1.

    Example:
        >>> [round(v, 6) for v in dfl_target_weights(torch.tensor(1.25, dtype=torch.float64), 3).tolist()]
        [0.0, 0.75, 0.25, 0.0]
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins} is invalid: it must be an integer >= 1")
    dtype = target.dtype if target.dtype in _FLOAT_TYPES else torch.float64
    return _dfl_weights(torch.zeros((*target.shape, n_bins + 1), dtype=dtype), target)


def dfl_loss(bin_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution Focal Loss, -[(y_{i+1} - y) log S_i + (y - y_i) log S_{i+1}] (GFL paper eq. 6).

    S = softmax over the n + 1 bins 0..n (bin width 1); y_i = floor(y). The minimum is at S_i = y_{i+1} - y and
    S_{i+1} = y - y_i.

    Args:
        bin_logits: (..., n+1) float logits of the bins.
        target: (...) continuous target in [0, n] (distance in bin units).

    Returns:
        (...) loss.

    Example:
        >>> z = torch.tensor([0.1, 0.5, 2.0, 0.3, -1.0], dtype=torch.float64)
        >>> round(dfl_loss(z, torch.tensor(2.3, dtype=torch.float64)).item(), 8)
        0.98322928
    """
    w = _dfl_weights(bin_logits, target)
    return -(w * torch.log_softmax(bin_logits, dim=-1)).sum(dim=-1)


def dfl_grad(bin_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """dDFL/dz_j = S_j - w_j (reference.md 1.6). Returns (..., n+1). Arguments as :func:`dfl_loss`."""
    w = _dfl_weights(bin_logits, target)
    return torch.softmax(bin_logits, dim=-1) - w


# ---------------------------------------------------------------------------------------------------------------
# Regression: L1, smooth L1
# ---------------------------------------------------------------------------------------------------------------


def _as_float_tensor(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_TYPES:
        raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    return t


def l1_loss(diff: torch.Tensor) -> torch.Tensor:
    """|d|, elementwise, of the offset d = prediction - target (torchvision RetinaNet v1's box loss)."""
    return _as_float_tensor(diff, "diff").abs()


def l1_grad(diff: torch.Tensor) -> torch.Tensor:
    """d|d|/dd = sign(d) (0 at d = 0, as torch's abs backward)."""
    return torch.sign(_as_float_tensor(diff, "diff"))


def smooth_l1_loss(diff: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Smooth L1: 0.5 d^2 / beta if |d| < beta, else |d| - 0.5 beta; beta = 0 is L1 (as ``F.smooth_l1_loss``).

    Args:
        diff: (...) float offsets d = prediction - target.
        beta: transition point >= 0 (Detectron 0.11, detectron2 0.1 or 0, torch 1.0).

    Returns:
        (...) loss.

    Example:
        >>> smooth_l1_loss(torch.tensor([-2.0, 0.5]), beta=1.0).tolist()
        [1.5, 0.125]
    """
    _check_nonnegative(beta, "beta")
    diff = _as_float_tensor(diff, "diff")
    ad = diff.abs()
    if beta == 0:
        return ad
    return torch.where(ad < beta, 0.5 * ad**2 / beta, ad - 0.5 * beta)


def smooth_l1_grad(diff: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """d/dd of :func:`smooth_l1_loss`: d / beta inside |d| < beta, sign(d) outside."""
    _check_nonnegative(beta, "beta")
    diff = _as_float_tensor(diff, "diff")
    if beta == 0:
        return torch.sign(diff)
    return torch.where(diff.abs() < beta, diff / beta, torch.sign(diff))


# ---------------------------------------------------------------------------------------------------------------
# IoU-family box losses on aligned (..., 4) xyxy pairs
# ---------------------------------------------------------------------------------------------------------------


def _check_boxes(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    boxes1, boxes2 = _check_pair(boxes1, boxes2, ("boxes1", "boxes2"))
    if boxes1.ndim < 1 or boxes1.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4) xyxy, got {tuple(boxes1.shape)}")
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        if b.numel() and (bool((b[..., 2] < b[..., 0]).any()) or bool((b[..., 3] < b[..., 1]).any())):
            raise ValueError(f"{name} has boxes with x2 < x1 or y2 < y1: boxes must be xyxy")
    return boxes1, boxes2


def _inter_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection and union areas of aligned pairs, torchvision ``_loss_inter_union`` (same gradients)."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xk1, yk1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xk2, yk2 = torch.min(x2, x2g), torch.min(y2, y2g)
    mask = (yk2 > yk1) & (xk2 > xk1)
    inter = torch.where(mask, (xk2 - xk1) * (yk2 - yk1), torch.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def _enclosing(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height of the smallest enclosing box C."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    return torch.max(x2, x2g) - torch.min(x1, x1g), torch.max(y2, y2g) - torch.min(y1, y1g)


def _center_dist2(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    return ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2


def box_iou_pairs(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of aligned pairs, inter / (union + eps) as in torchvision's box losses.

    Args:
        boxes1: (..., 4) float xyxy (predictions).
        boxes2: (..., 4) float xyxy (ground truth), same shape.
        eps: added to the union.

    Returns:
        (...) IoU in [0, 1].

    Example:
        >>> b1 = torch.tensor([[0.0, 0, 10, 10]]); b2 = torch.tensor([[5.0, 5, 15, 15]])
        >>> round(box_iou_pairs(b1, b2).item(), 6)
        0.142857
    """
    boxes1, boxes2 = _check_boxes(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    return inter / (union + eps)


def iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Linear IoU loss 1 - IoU (mmdet IoULoss mode='linear'); |dL/dIoU| = 1. Shapes as :func:`box_iou_pairs`."""
    return 1 - box_iou_pairs(boxes1, boxes2, eps)


def log_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """UnitBox IoU loss -ln(max(IoU, eps)) (mmdet IoULoss default mode='log', eps 1e-6); dL/dIoU = -1/IoU."""
    boxes1, boxes2 = _check_boxes(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    return -torch.log((inter / union).clamp(min=eps))


def giou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Generalized IoU, IoU - |C minus (B union G)| / |C|, in (-1, 1]. Shapes as :func:`box_iou_pairs`."""
    boxes1, boxes2 = _check_boxes(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    cw, ch = _enclosing(boxes1, boxes2)
    area_c = cw * ch
    return iou - (area_c - union) / (area_c + eps)


def giou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - GIoU; equal to ``torchvision.ops.generalized_box_iou_loss`` (values and gradients)."""
    return 1 - giou(boxes1, boxes2, eps)


def diou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """DIoU loss 1 - IoU + rho^2 / c^2 (rho: centre distance, c: diagonal of C); equal to torchvision's.

    Shapes as :func:`box_iou_pairs`.
    """
    boxes1, boxes2 = _check_boxes(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    cw, ch = _enclosing(boxes1, boxes2)
    return 1 - iou + _center_dist2(boxes1, boxes2) / (cw**2 + ch**2 + eps)


def diou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Distance IoU, IoU - rho^2 / c^2, in (-1, 1]."""
    return 1 - diou_loss(boxes1, boxes2, eps)


def ciou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7, *, gated: bool = False) -> torch.Tensor:
    """CIoU loss 1 - IoU + rho^2/c^2 + alpha v, with alpha = v / (1 - IoU + v) treated as a constant.

    v = (4 / pi^2) (arctan(w_gt / h_gt) - arctan(w / h))^2 measures the aspect-ratio mismatch; ``boxes1`` is the
    prediction, ``boxes2`` the ground truth.

    Args:
        boxes1: (..., 4) predicted xyxy boxes.
        boxes2: (..., 4) ground-truth xyxy boxes.
        eps: small constant in the denominators.
        gated: False (default) is torchvision's ``complete_box_iou_loss`` (alpha = v / (1 - IoU + v + eps), no
            gating, no clamp). True is mmdet 3.3.0's ``ciou_loss``: alpha = 1[IoU > 0.5] v / (1 - IoU + v), eps
            added to the heights, CIoU clamped to [-1, 1]; below IoU 0.5 it equals DIoU.

    Returns:
        (...) loss.

    Example:
        >>> b1 = torch.tensor([[0.0, 0, 4, 2]], dtype=torch.float64)
        >>> b2 = torch.tensor([[1.0, 0, 3, 4]], dtype=torch.float64)
        >>> round(ciou_loss(b1, b2).item(), 6), round(ciou_loss(b1, b2, gated=True).item(), 6)
        (0.731668, 0.697917)
    """
    boxes1, boxes2 = _check_boxes(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    if not gated:
        inter, union = _inter_union(boxes1, boxes2)
        iou = inter / (union + eps)
        cw, ch = _enclosing(boxes1, boxes2)
        diou_l = 1 - iou + _center_dist2(boxes1, boxes2) / (cw**2 + ch**2 + eps)
        v = (4 / (math.pi**2)) * torch.pow(torch.atan((x2g - x1g) / (y2g - y1g)) - torch.atan((x2 - x1) / (y2 - y1)), 2)
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
        return diou_l + alpha * v
    # mmdet 3.3.0 mmdet/models/losses/iou_loss.py::ciou_loss
    wh = (torch.min(boxes1[..., 2:], boxes2[..., 2:]) - torch.max(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    ap = (x2 - x1) * (y2 - y1)
    ag = (x2g - x1g) * (y2g - y1g)
    ious = overlap / (ap + ag - overlap + eps)
    enclose = (torch.max(boxes1[..., 2:], boxes2[..., 2:]) - torch.min(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    c2 = enclose[..., 0] ** 2 + enclose[..., 1] ** 2 + eps
    rho2 = ((x1g + x2g) - (x1 + x2)) ** 2 / 4 + ((y1g + y2g) - (y1 + y2)) ** 2 / 4
    w1, h1 = x2 - x1, y2 - y1 + eps
    w2, h2 = x2g - x1g, y2g - y1g + eps
    v = (4 / math.pi**2) * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
    with torch.no_grad():
        alpha = (ious > 0.5).to(v.dtype) * v / (1 - ious + v)
    cious = ious - (rho2 / c2 + alpha * v)
    return 1 - cious.clamp(min=-1.0, max=1.0)


def ciou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7, *, gated: bool = False) -> torch.Tensor:
    """Complete IoU, 1 - :func:`ciou_loss` (same arguments)."""
    return 1 - ciou_loss(boxes1, boxes2, eps, gated=gated)


# --- Rectified IoU (reconstruction) -----------------------------------------------------------------------------


def _riou_constants(beta: float, k: float) -> tuple[float, float]:
    if not 0 < beta < 1:
        raise ValueError(f"beta={beta} is invalid: the RIoU breakpoint must lie in (0, 1)")
    if not k > 0 or math.isinf(k):
        raise ValueError(f"k={k} is invalid: the RIoU slope must be a finite number > 0")
    c = k * beta / (2 * (1 - beta))
    a = c * (1 - beta) ** 2 + (k / 2) * beta**2
    return a, c


def riou_loss_from_iou(
    iou: torch.Tensor, beta: float = DEFAULT_RIOU_BETA, k: float = DEFAULT_RIOU_K, b: float = 0.0
) -> torch.Tensor:
    """Rectified IoU loss as a function of IoU u — a reconstruction of the paper's shape, not its exact equation.

    Wang & Zhang (ACM MM 2020) describe RIoU only qualitatively in the reachable abstract: the gradient magnitude
    grows with IoU (low-IoU samples are suppressed) up to a breakpoint beta, then falls so that near-perfect boxes
    do not dominate. This reconstruction (reference.md section 3) uses the gradient magnitude
    g(u) = k u for u <= beta and k beta (1 - u) / (1 - beta) above, integrated so that L(1) = b:

        L(u) = c (1 - u)^2 + b              for u > beta,  c = k beta / (2 (1 - beta))
        L(u) = a - (k / 2) u^2 + b          for u <= beta, a = c (1 - beta)^2 + (k / 2) beta^2

    Args:
        iou: (...) IoU values in [0, 1].
        beta: breakpoint in (0, 1). Default 0.95 (the paper's value).
        k: slope of the rising branch > 0. Default 2 (g(beta) = 1.9 against 1 for 1 - IoU).
        b: optional additive offset (default 0, so L(1) = 0).

    Returns:
        (...) loss.

    Example:
        >>> [round(v, 4) for v in riou_loss_from_iou(torch.tensor([0.0, 0.95, 1.0], dtype=torch.float64)).tolist()]
        [0.95, 0.0475, 0.0]
    """
    a, c = _riou_constants(beta, k)
    iou = _as_float_tensor(iou, "iou")
    return torch.where(iou > beta, c * (1 - iou) ** 2, a - (k / 2) * iou**2) + b


def riou_grad_iou(
    iou: torch.Tensor, beta: float = DEFAULT_RIOU_BETA, k: float = DEFAULT_RIOU_K, b: float = 0.0
) -> torch.Tensor:
    """dL/du of :func:`riou_loss_from_iou` = -g(u): -k u below beta, -k beta (1 - u) / (1 - beta) above.

    ``b`` is accepted for symmetry with the loss and does not change the gradient.
    """
    _riou_constants(beta, k)
    iou = _as_float_tensor(iou, "iou")
    return torch.where(iou > beta, -k * beta * (1 - iou) / (1 - beta), -k * iou)


def riou_loss(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    beta: float = DEFAULT_RIOU_BETA,
    k: float = DEFAULT_RIOU_K,
    b: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Rectified IoU loss of aligned box pairs (reconstruction of the paper's shape, see :func:`riou_loss_from_iou`).

    Args:
        boxes1: (..., 4) predicted xyxy boxes.
        boxes2: (..., 4) ground-truth xyxy boxes.
        beta, k, b: shape parameters of the reconstruction.
        eps: added to the union in the IoU.

    Returns:
        (...) loss.
    """
    return riou_loss_from_iou(box_iou_pairs(boxes1, boxes2, eps), beta=beta, k=k, b=b)
