"""Tests of explorer.losses.curves: the tables behind the Loss lab figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from explorer.losses import curves as C
from explorer.losses import functions as L


def test_classification_curves_p_t_axis_matches_paper_table() -> None:
    df = C.classification_curves(["focal"], gammas=(0.0, 2.0), alpha=-1, n=1000)
    assert set(df["curve"]) == {"FL γ=0", "FL γ=2"}
    for gamma, at_09 in ((0.0, 0.10536052), (2.0, 0.00105361)):
        d = df[df["gamma"] == gamma]
        assert float(np.interp(0.9, d["x"], d["loss"])) == pytest.approx(at_09, rel=2e-3)
        np.testing.assert_allclose(d["factor"], (1 - d["p_t"]) ** gamma, rtol=1e-9)
    d2 = df[df["gamma"] == 2.0]
    assert d2["x"].between(0, 1).all() and d2["x"].is_monotonic_increasing


@pytest.mark.parametrize("target", [0, 1])
def test_classification_gradients_are_autograd(target: int) -> None:
    df = C.classification_curves(alpha=0.25, axis="logit", target=target, n=50)
    x = torch.tensor(df[df["curve"] == "CE"]["logit"].to_numpy())
    y = torch.full_like(x, float(target))
    fns = {
        "CE": lambda z: L.ce_loss(z, y),
        "α-CE α=0.25": lambda z: L.alpha_ce_loss(z, y, 0.25),
        "FL γ=2 α=0.25": lambda z: L.focal_loss(z, y, 0.25, 2.0),
        "FL γ=0.5 α=0.25": lambda z: L.focal_loss(z, y, 0.25, 0.5),
        "FL* γ*=2 β*=1": lambda z: L.fl_star_loss(z, y, 2.0, 1.0),
    }
    for label, fn in fns.items():
        z = x.clone().requires_grad_(True)
        fn(z).sum().backward()
        np.testing.assert_allclose(df[df["curve"] == label]["grad"], z.grad.numpy(), atol=1e-12)
    # On the logit axis p_t = sigmoid(+-x).
    ce = df[df["curve"] == "CE"]
    np.testing.assert_allclose(ce["p_t"], torch.sigmoid(x if target else -x).numpy(), atol=1e-15)


def test_focal_alpha_separate_from_alpha_ce() -> None:
    df = C.classification_curves(["CE", "α-CE", "focal"], gammas=(0.0,), alpha=0.5, focal_alpha=-1, n=20)
    ce = df[df["curve"] == "CE"]["loss"].to_numpy()
    np.testing.assert_allclose(df[df["curve"] == "α-CE α=0.5"]["loss"], 0.5 * ce, rtol=1e-12)
    np.testing.assert_allclose(df[df["curve"] == "FL γ=0"]["loss"], ce, rtol=1e-12)


def test_classification_curves_validation() -> None:
    with pytest.raises(ValueError, match="unknown classification loss"):
        C.classification_curves(["hinge"])
    with pytest.raises(ValueError, match="axis"):
        C.classification_curves(axis="prob")
    assert C.classification_curves([]).empty


def test_focal_reduction() -> None:
    assert C.focal_reduction(0.9, 2.0) == pytest.approx(100.0)
    assert C.focal_reduction(0.968, 2.0) == pytest.approx(976.5625)
    assert C.focal_reduction(0.9, 2.0, alpha_t=0.25) == pytest.approx(400.0)
    with pytest.raises(ValueError, match="p_t=1"):
        C.focal_reduction(1, 2.0)


def test_soft_target_grid_and_cut() -> None:
    g = C.soft_target_grid(n_pred=21, n_target=11)
    assert g.qfl.shape == g.vfl_grad.shape == (11, 21)
    # QFL is minimal where the prediction equals the target (on each row).
    for i, t in enumerate(g.target):
        j = int(np.argmin(g.qfl[i]))
        assert abs(g.pred[j] - t) <= 0.06
    # Target 0 row of VFL is alpha p^gamma (-log(1-p)).
    p = g.pred
    np.testing.assert_allclose(g.vfl[0], 0.75 * p**2 * -np.log1p(-p), rtol=1e-10)
    assert len(g.to_frame()) == 11 * 21
    cut = C.soft_target_cut(0.6, n=200)
    assert cut["loss_name"].nunique() == 3
    q = cut[cut["loss_name"].str.startswith("QFL")]
    assert q.loc[q["loss"].idxmin(), "pred"] == pytest.approx(0.6, abs=0.01)
    with pytest.raises(ValueError, match=r"target=1\.5"):
        C.soft_target_cut(1.5)


def test_dfl_bins_and_curve() -> None:
    df = C.dfl_bins(7.3, n_bins=16)
    assert len(df) == 17
    assert df["target_weight"].sum() == pytest.approx(1.0)
    assert df.loc[7, "target_weight"] == pytest.approx(0.7) and df.loc[8, "target_weight"] == pytest.approx(0.3)
    assert df["pred_prob"].sum() == pytest.approx(1.0)
    assert df["pred_expectation"].iloc[0] == pytest.approx(7.3, abs=1e-3)
    assert df["loss"].iloc[0] >= df["min_loss"].iloc[0]
    np.testing.assert_allclose(df["grad"], df["pred_prob"] - df["target_weight"], atol=1e-12)
    curve = C.dfl_loss_vs_mean(7.3, n=161)
    best = curve.loc[curve["loss"].idxmin(), "pred_mean"]
    assert abs(best - 7.3) < 0.5
    with pytest.raises(ValueError, match="target=17"):
        C.dfl_bins(17, n_bins=16)


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
