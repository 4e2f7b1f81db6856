"""Binary classification losses of dense detection, elementwise, in torch, with closed-form gradients.

CE, alpha-balanced CE, focal loss and FL* (the focal-loss paper, Lin et al. 2017, eqs. 1-11), plus the p_t-space
forms behind the paper's Figure 1. Every loss takes float32 or float64 tensors and returns the per-element loss
with no reduction. Focal loss follows torchvision 0.29.1's ``sigmoid_focal_loss`` arithmetic, so values and
autograd gradients agree with it (``shared/reference.md`` section 1). The ``*_grad`` functions are the closed-form
derivatives with respect to the logit (or p_t), checked against autograd in the tests.

Conventions: ``targets`` y are in {0, 1} (soft targets in [0, 1] work too, except in the closed-form focal/FL*
gradients which need binary targets); p = sigmoid(x); p_t = p if y = 1 else 1 - p;
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

from explorer.losses.checks import check_alpha, check_nonnegative, check_pair

__all__ = [
    "alpha_ce_grad",
    "alpha_ce_loss",
    "ce_grad",
    "ce_loss",
    "fl_star_grad",
    "fl_star_loss",
    "focal_grad_pt",
    "focal_loss",
    "focal_loss_grad",
    "focal_loss_pt",
    "logit_from_pt",
    "modulating_factor",
]


def _alpha_t(alpha: float, targets: torch.Tensor) -> torch.Tensor | float:
    """alpha * y + (1 - alpha) * (1 - y); 1.0 when alpha = -1 (disabled)."""
    if alpha < 0:
        return 1.0
    return alpha * targets + (1 - alpha) * (1 - targets)


def _sign(targets: torch.Tensor) -> torch.Tensor:
    """s = 2y - 1: the paper's {-1, +1} label."""
    return 2 * targets - 1


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
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def ce_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dCE/dx = p - y (reference.md 1.1). Shapes as :func:`ce_loss`."""
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
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
    check_alpha(alpha)
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
    return _alpha_t(alpha, targets) * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def alpha_ce_grad(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    """d(alpha-CE)/dx = alpha_t * (p - y). Arguments as :func:`alpha_ce_loss`."""
    check_alpha(alpha)
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
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
    check_alpha(alpha)
    check_nonnegative(gamma, "gamma")
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
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
    check_alpha(alpha)
    check_nonnegative(gamma, "gamma")
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
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
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
    x_t = _sign(targets) * logits
    return F.softplus(-(gamma * x_t + beta)) / gamma


def fl_star_grad(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, beta: float = 1.0) -> torch.Tensor:
    """dFL*/dx = s * (p*_t - 1) (paper eq. 11). Arguments as :func:`fl_star_loss` (binary targets)."""
    _check_fl_star_gamma(gamma)
    logits, targets = check_pair(logits, targets, ("logits", "targets"))
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
    check_nonnegative(gamma, "gamma")
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
    check_nonnegative(gamma, "gamma")
    return -alpha_t * (1 - p_t) ** gamma * torch.log(p_t)


def focal_grad_pt(p_t: torch.Tensor, gamma: float = 2.0, alpha_t: float = 1.0) -> torch.Tensor:
    """dFL/dp_t = alpha_t * [gamma * (1 - p_t)^(gamma - 1) * log p_t - (1 - p_t)^gamma / p_t] (reference.md 1.3).

    At p_t = 1 the value is 0 for gamma > 1, -alpha_t for gamma in {0, 1}, and the one-sided limit 0 is returned
    for 0 < gamma < 1 (where the first term is 0 * inf). Shapes as :func:`focal_loss_pt`.
    """
    check_nonnegative(gamma, "gamma")
    q = 1 - p_t
    log_p = torch.log(p_t)
    first = torch.where(log_p == 0, torch.zeros_like(p_t), gamma * q ** (gamma - 1) * log_p)
    return alpha_t * (first - q**gamma / p_t)
