"""Tests of explorer.losses.curves: the tables behind the Loss lab's classification and soft-target figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.losses import classification
from explorer.losses import curves as C


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
        "CE": lambda z: classification.ce_loss(z, y),
        "α-CE α=0.25": lambda z: classification.alpha_ce_loss(z, y, 0.25),
        "FL γ=2 α=0.25": lambda z: classification.focal_loss(z, y, 0.25, 2.0),
        "FL γ=0.5 α=0.25": lambda z: classification.focal_loss(z, y, 0.25, 0.5),
        "FL* γ*=2 β*=1": lambda z: classification.fl_star_loss(z, y, 2.0, 1.0),
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


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(C).failed == 0
