"""Soft-target losses of dense detection: Quality Focal Loss, Varifocal loss, Distribution Focal Loss.

QFL and DFL are Generalized Focal Loss's (Li et al. 2020; mmdet ``gfocal_loss.py``), VFL is VarifocalNet's
(Zhang et al. 2021; mmdet ``varifocal_loss.py``), following mmdet 3.3.0 and ``shared/reference.md`` sections 1.5-1.6.
The targets are IoU-like values in [0, 1] (QFL, VFL; 0 for a negative) or a continuous distance in bin units (DFL).
Every loss is elementwise with no reduction, and each has a closed-form ``*_grad`` checked against autograd.

Example:
    >>> x = torch.tensor([0.0], dtype=torch.float64); q = torch.tensor([0.6], dtype=torch.float64)
    >>> round(qfl_loss(x, q).item(), 8)
    0.00693147
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explorer.losses.checks import FLOAT_TYPES, check_alpha, check_nonnegative, check_pair

__all__ = [
    "dfl_grad",
    "dfl_loss",
    "dfl_target_weights",
    "qfl_grad",
    "qfl_loss",
    "varifocal_grad",
    "varifocal_loss",
]


def _check_unit_interval(t: torch.Tensor, name: str) -> None:
    if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")


def _check_soft_pair(logits: torch.Tensor, soft_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~explorer.losses.checks.check_pair` for logits and soft targets, which must also lie in [0, 1]."""
    logits, soft_targets = check_pair(logits, soft_targets, ("logits", "soft_targets"))
    _check_unit_interval(soft_targets, "soft_targets")
    return logits, soft_targets


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
    check_nonnegative(beta, "beta")
    logits, soft_targets = _check_soft_pair(logits, soft_targets)
    scale = (soft_targets - torch.sigmoid(logits)).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none") * scale


def qfl_grad(logits: torch.Tensor, soft_targets: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """dQFL/dx = beta |y-s|^(beta-1) sign(s-y) s(1-s) BCE + |y-s|^beta (s - y), s = sigma(x) (reference.md 1.5).

    Where sigma = y exactly, the first term is taken as 0 (its limit for beta > 1). Arguments as :func:`qfl_loss`.
    """
    check_nonnegative(beta, "beta")
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
    check_alpha(alpha, allow_disable=False)
    check_nonnegative(gamma, "gamma")
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
    check_alpha(alpha, allow_disable=False)
    check_nonnegative(gamma, "gamma")
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
    if bin_logits.dtype not in FLOAT_TYPES:
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
    dtype = target.dtype if target.dtype in FLOAT_TYPES else torch.float64
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
