"""Tables behind the Loss lab's "Box losses" tab: IoU-family loss paths, smooth L1 curves, the two-box table.

Each function evaluates the losses of :mod:`explorer.losses.box` and returns a tidy ``pandas.DataFrame`` that a
figure builder plots and a page offers as CSV. Computation is in float64 torch; gradients with respect to the box
come from autograd (GIoU, DIoU and CIoU depend on more than IoU), those with respect to IoU from the closed forms.

Example:
    >>> df = box_loss_curves("scale", losses=["1 − IoU"], n=3)
    >>> [round(v, 4) for v in df["loss"]]
    [0.999, 0.4995, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from explorer.losses import box
from explorer.losses.checks import check_count

__all__ = ["BOX_LOSSES", "BOX_PATHS", "box_loss_curves", "box_pair_table", "smooth_l1_curves"]

F64 = torch.float64
#: A box loss on aligned (..., 4) xyxy pairs: (prediction, ground truth) -> (...) loss.
_BoxLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Box losses of the IoU family, in plotting order.
BOX_LOSSES: tuple[str, ...] = ("1 − IoU", "−ln IoU", "GIoU", "DIoU", "CIoU", "RIoU")
#: Ways to move a unit predicted box against the unit ground-truth box [0, 0, 1, 1] so that IoU sweeps (0, 1].
BOX_PATHS: dict[str, str] = {
    "shift": "same size, slid diagonally away from the ground truth",
    "scale": "same centre, shrunk",
    "aspect": "same centre and area, stretched wider",
}


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


def _box_loss_fns(riou_beta: float, riou_k: float, ciou_gated: bool) -> dict[str, _BoxLoss]:
    return {
        "1 − IoU": box.iou_loss,
        "−ln IoU": box.log_iou_loss,
        "GIoU": box.giou_loss,
        "DIoU": box.diou_loss,
        "CIoU": lambda b, g: box.ciou_loss(b, g, gated=ciou_gated),
        "RIoU": lambda b, g: box.riou_loss(b, g, beta=riou_beta, k=riou_k),
    }


def box_loss_curves(
    path: str = "shift",
    *,
    losses: Sequence[str] = BOX_LOSSES,
    riou_beta: float = box.DEFAULT_RIOU_BETA,
    riou_k: float = box.DEFAULT_RIOU_K,
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
    check_count(n)
    iou = torch.linspace(1e-3, 1.0, n, dtype=F64)
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=F64).expand(n, 4)
    base = _path_boxes(path, iou)
    fns = _box_loss_fns(riou_beta, riou_k, ciou_gated)
    grad_iou = {
        "1 − IoU": torch.ones_like(iou),
        "−ln IoU": 1 / iou,
        "RIoU": -box.riou_grad_iou(iou, riou_beta, riou_k),
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
    check_count(n)
    if not span > 0:
        raise ValueError(f"span={span} is invalid: it must be > 0")
    if not betas:
        raise ValueError("betas is empty: give at least one beta")
    d = torch.linspace(-span, span, n, dtype=F64)
    frames = []
    for b in betas:
        label = "L1 (β=0)" if b == 0 else f"smooth L1 β={b:g}"
        frames.append(
            pd.DataFrame(
                {
                    "curve": label,
                    "beta": float(b),
                    "offset": d.numpy(),
                    "loss": box.smooth_l1_loss(d, b).numpy(),
                    "grad": box.smooth_l1_grad(d, b).numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def box_pair_table(
    pred_xyxy: Sequence[float],
    gt_xyxy: Sequence[float],
    *,
    riou_beta: float = box.DEFAULT_RIOU_BETA,
    riou_k: float = box.DEFAULT_RIOU_K,
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
    iou = box.box_iou_pairs(pred, gt).item()
    rows = [
        ("IoU", iou, box.iou_loss(pred, gt).item()),
        ("GIoU", box.giou(pred, gt).item(), box.giou_loss(pred, gt).item()),
        ("DIoU", box.diou(pred, gt).item(), box.diou_loss(pred, gt).item()),
        ("CIoU (torchvision)", box.ciou(pred, gt).item(), box.ciou_loss(pred, gt).item()),
        ("CIoU (mmdet, gated)", box.ciou(pred, gt, gated=True).item(), box.ciou_loss(pred, gt, gated=True).item()),
        ("−ln IoU", math.nan, box.log_iou_loss(pred, gt).item()),
        ("RIoU (reconstruction)", math.nan, box.riou_loss(pred, gt, beta=riou_beta, k=riou_k).item()),
    ]
    return pd.DataFrame(rows, columns=["measure", "value", "loss"])
