"""Box-regression losses of dense detection: L1 and smooth L1 on offsets, the IoU family on aligned box pairs.

L1 and smooth L1 act on encoded offsets d = prediction - target (torchvision RetinaNet, Detectron). The IoU family
(1 - IoU, -ln IoU, GIoU, DIoU, CIoU) acts on aligned (..., 4) xyxy pairs and follows torchvision 0.29.1's
``generalized_box_iou_loss``, ``distance_box_iou_loss`` and ``complete_box_iou_loss`` arithmetic (values and
autograd gradients agree), with mmdet 3.3.0's gated CIoU as an option; Rectified IoU is a reconstruction of the
paper's shape (``shared/reference.md`` sections 2-3). Every loss is elementwise with no reduction.

Example:
    >>> b1 = torch.tensor([[0.0, 0, 10, 10]]); b2 = torch.tensor([[5.0, 5, 15, 15]])
    >>> round(giou_loss(b1, b2).item(), 6)
    1.079365
"""

from __future__ import annotations

import math

import torch

from explorer.losses.checks import FLOAT_TYPES, check_nonnegative, check_pair

__all__ = [
    "DEFAULT_RIOU_BETA",
    "DEFAULT_RIOU_K",
    "box_iou_pairs",
    "ciou",
    "ciou_loss",
    "ciou_ultralytics",
    "diou",
    "diou_loss",
    "giou",
    "giou_loss",
    "iou_loss",
    "l1_grad",
    "l1_loss",
    "log_iou_loss",
    "riou_grad_iou",
    "riou_loss",
    "riou_loss_from_iou",
    "smooth_l1_grad",
    "smooth_l1_loss",
]

#: Rectified IoU breakpoint (the paper's beta) and slope of the rising branch (reference.md section 3).
DEFAULT_RIOU_BETA = 0.95
DEFAULT_RIOU_K = 2.0


# ---------------------------------------------------------------------------------------------------------------
# Regression: L1, smooth L1
# ---------------------------------------------------------------------------------------------------------------


def _as_float_tensor(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_TYPES:
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
    check_nonnegative(beta, "beta")
    diff = _as_float_tensor(diff, "diff")
    ad = diff.abs()
    if beta == 0:
        return ad
    return torch.where(ad < beta, 0.5 * ad**2 / beta, ad - 0.5 * beta)


def smooth_l1_grad(diff: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """d/dd of :func:`smooth_l1_loss`: d / beta inside |d| < beta, sign(d) outside."""
    check_nonnegative(beta, "beta")
    diff = _as_float_tensor(diff, "diff")
    if beta == 0:
        return torch.sign(diff)
    return torch.where(diff.abs() < beta, diff / beta, torch.sign(diff))


# ---------------------------------------------------------------------------------------------------------------
# IoU-family box losses on aligned (..., 4) xyxy pairs
# ---------------------------------------------------------------------------------------------------------------


def _check_boxes(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    boxes1, boxes2 = check_pair(boxes1, boxes2, ("boxes1", "boxes2"))
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
    return _ciou_loss_mmdet(boxes1, boxes2, eps) if gated else _ciou_loss_torchvision(boxes1, boxes2, eps)


def _ciou_loss_torchvision(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> torch.Tensor:
    """torchvision 0.29.1 ``complete_box_iou_loss`` arithmetic on checked (..., 4) pairs: DIoU loss + alpha v."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    cw, ch = _enclosing(boxes1, boxes2)
    diou_l = 1 - iou + _center_dist2(boxes1, boxes2) / (cw**2 + ch**2 + eps)
    v = (4 / (math.pi**2)) * torch.pow(torch.atan((x2g - x1g) / (y2g - y1g)) - torch.atan((x2 - x1) / (y2 - y1)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou_l + alpha * v


def _ciou_loss_mmdet(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> torch.Tensor:
    """mmdet 3.3.0 ``mmdet/models/losses/iou_loss.py::ciou_loss`` on checked pairs: alpha gated at IoU > 0.5."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
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


def ciou_ultralytics(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU as Ultralytics computes it (``ultralytics/utils/metrics.py::bbox_iou(xywh=False, CIoU=True)``,
    8.4.190), operation by operation in its float32 order; its ``TaskAlignedAssigner`` calls it with the GT boxes as
    ``box1`` and the predicted boxes as ``box2``.

    Its eps sits elsewhere than torchvision's or mmdet's: on both heights (``h = y2 - y1 + eps``), on the union, on
    the enclosing diagonal and in alpha's denominator. No input checks (the assigner's hot path).

    Args:
        box1, box2: (..., 4) float xyxy, broadcast against each other.
        eps: 1e-7.

    Returns:
        (..., 1) CIoU (the trailing 1 as in Ultralytics).
    """
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp_(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp_(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    v = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return iou - (rho2 / c2 + v * alpha)


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
