"""Tests of explorer.losses.box_curves: the tables behind the Loss lab's box-loss figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from explorer.losses import box_curves as C


@pytest.mark.parametrize("path", list(C.BOX_PATHS))
def test_box_paths_hit_the_requested_iou(path: str) -> None:
    df = C.box_loss_curves(path, n=200)
    iou_rows = df[df["loss_name"] == "1 − IoU"]
    np.testing.assert_allclose(iou_rows["loss"], 1 - iou_rows["iou"], atol=1e-6)
    assert set(df["loss_name"]) == set(C.BOX_LOSSES)
    # grad_iou is the closed form for IoU-only losses, NaN for the geometric ones.
    ln = df[df["loss_name"] == "−ln IoU"]
    np.testing.assert_allclose(ln["grad_iou"], 1 / ln["iou"], rtol=1e-12)
    assert df[df["loss_name"] == "GIoU"]["grad_iou"].isna().all()
    assert (df["grad_box"] >= 0).all() and np.isfinite(df["grad_box"]).all()


def test_box_curves_gradients_match_torchvision() -> None:
    n = 100
    df = C.box_loss_curves("aspect", n=n)
    iou = torch.linspace(1e-3, 1.0, n, dtype=torch.float64)
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64).expand(n, 4)
    pred = C._path_boxes("aspect", iou)
    for name, ref in (("GIoU", generalized_box_iou_loss), ("DIoU", distance_box_iou_loss)):
        p = pred.clone().requires_grad_(True)
        ref(p, gt).sum().backward()
        np.testing.assert_allclose(df[df["loss_name"] == name]["grad_box"], p.grad.norm(dim=-1).numpy(), atol=1e-9)
    p = pred.clone().requires_grad_(True)
    ciou = complete_box_iou_loss(p, gt)
    np.testing.assert_allclose(df[df["loss_name"] == "CIoU"]["loss"], ciou.detach().numpy(), atol=1e-9)
    # On the aspect path CIoU adds an aspect penalty over DIoU.
    diff = df[df["loss_name"] == "CIoU"]["loss"].to_numpy() - df[df["loss_name"] == "DIoU"]["loss"].to_numpy()
    assert (diff[:-1] > 0).all()


def test_smooth_l1_curves() -> None:
    df = C.smooth_l1_curves((0.0, 0.11, 1.0), span=2.0, n=401)
    assert set(df["curve"]) == {"L1 (β=0)", "smooth L1 β=0.11", "smooth L1 β=1"}
    l1 = df[df["beta"] == 0.0]
    np.testing.assert_allclose(l1["loss"], l1["offset"].abs())
    one = df[df["beta"] == 1.0]
    assert float(np.interp(2.0, one["offset"], one["loss"])) == pytest.approx(1.5)
    assert one["grad"].abs().max() == pytest.approx(1.0)


def test_box_pair_table_reference_pair() -> None:
    t = C.box_pair_table([0, 0, 4, 2], [1, 0, 3, 4]).set_index("measure")
    assert t.loc["IoU", "value"] == pytest.approx(1 / 3, abs=1e-6)
    assert t.loc["GIoU", "value"] == pytest.approx(0.08333333, abs=1e-6)
    assert t.loc["DIoU", "value"] == pytest.approx(0.30208333, abs=1e-6)
    assert t.loc["CIoU (torchvision)", "value"] == pytest.approx(0.26833167, abs=1e-6)
    assert t.loc["CIoU (mmdet, gated)", "loss"] == pytest.approx(0.69791667, abs=1e-6)
    assert t.loc["−ln IoU", "loss"] == pytest.approx(math.log(3), abs=1e-6)
    assert math.isnan(t.loc["RIoU (reconstruction)", "value"])
    with pytest.raises(ValueError, match="x2 > x1"):
        C.box_pair_table([5, 0, 1, 2], [1, 0, 3, 4])
    with pytest.raises(ValueError, match="4 numbers"):
        C.box_pair_table([0, 0, 1], [1, 0, 3, 4])


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(C).failed == 0
