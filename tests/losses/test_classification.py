"""Tests of explorer.losses.classification against reference.md section 7.1, torchvision, autograd and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import sigmoid_focal_loss

from explorer.losses import classification as L
from tests.losses.helpers import F64, FAST, autograd, close, t64

# ---------------------------------------------------------------------------------------------------------------
# 7.1 focal loss vectors
# ---------------------------------------------------------------------------------------------------------------

X71 = t64([-3, -1, 0, 0.5, 2, 4, -2, 1])
Y71 = t64([0, 1, 0, 1, 1, 0, 1, 0])
CE71 = [0.04858735, 1.31326169, 0.69314718, 0.47407698, 0.12692801, 4.01814993, 2.12692801, 1.31326169]
ACE71 = [0.03644051, 0.32831542, 0.51986039, 0.11851925, 0.03173200, 3.01361245, 0.53173200, 0.98494627]
FL71 = [8.196e-05, 0.17546708, 0.12996510, 0.01689337, 0.00045089, 2.90618043, 0.41251954, 0.52640123]
DFL71 = [0.00023615, -0.19205868, 0.22371510, -0.03448425, -0.00121774, 0.81479689, -0.26917843, 0.57617604]
FL71_NOALPHA = [0.00010928, 0.70186830, 0.17328680, 0.06757349, 0.00180356, 3.87490724, 1.65007818, 0.70186830]


def test_focal_vectors_71() -> None:
    p = torch.sigmoid(X71)
    close(p, [0.04742587, 0.26894142, 0.5, 0.62245933, 0.88079708, 0.98201379, 0.11920292, 0.73105858])
    close(L.ce_loss(X71, Y71), CE71)
    close(L.alpha_ce_loss(X71, Y71, alpha=0.25), ACE71)
    close(L.focal_loss(X71, Y71, alpha=0.25, gamma=2), FL71, tol=1e-8)
    close(L.focal_loss(X71, Y71, alpha=-1, gamma=2), FL71_NOALPHA)
    close(L.focal_loss(X71, Y71, alpha=0.25, gamma=0), ACE71)
    fl = L.focal_loss(X71, Y71)
    assert math.isclose(fl.sum().item(), 4.1679596, abs_tol=1e-6)
    assert math.isclose(fl.mean().item(), 0.52099495, abs_tol=1e-6)


def test_focal_gradients_71() -> None:
    close(autograd(L.focal_loss, X71, Y71), DFL71)
    close(L.focal_loss_grad(X71, Y71), DFL71)
    close(autograd(L.ce_loss, X71, Y71), torch.sigmoid(X71) - Y71)
    close(L.ce_grad(X71, Y71), autograd(L.ce_loss, X71, Y71))
    close(L.alpha_ce_grad(X71, Y71), autograd(L.alpha_ce_loss, X71, Y71))


def test_focal_float32_vector() -> None:
    fl = L.focal_loss(X71.float(), Y71.float())
    assert fl.dtype == torch.float32
    close(fl, [8.2e-05, 0.175467, 0.129965, 0.016893, 0.000451, 2.90618, 0.41252, 0.526401], tol=1e-6)


def test_fl_star_vectors_71() -> None:
    g2b1 = [0.00045573, 0.65663084, 0.15663084, 0.06346401, 0.00335767, 3.50045573, 1.52429368, 0.65663084]
    g4b0 = [1.54e-06, 1.00453748, 0.17328680, 0.03173200, 8.385e-05, 4.00000003, 2.00008385, 1.00453748]
    close(L.fl_star_loss(X71, Y71, gamma=2, beta=1), g2b1)
    close(L.fl_star_loss(X71, Y71, gamma=4, beta=0), g4b0, tol=1e-8)
    for gamma, beta in ((2, 1), (4, 0), (0.5, -1)):
        close(L.fl_star_grad(X71, Y71, gamma, beta), autograd(L.fl_star_loss, X71, Y71, gamma, beta), tol=1e-12)


@pytest.mark.parametrize(
    ("gamma", "row"),
    [
        (0, [2.30258509, 0.69314718, 0.10536052, 0.01005034]),
        (0.5, [2.18442402, 0.49012907, 0.03331792, 0.00100503]),
        (1, [2.07232658, 0.34657359, 0.01053605, 0.00010050]),
        (2, [1.86509393, 0.17328680, 0.00105361, 1.01e-06]),
        (5, [1.35965347, 0.02166085, 1.05e-06, 0.0]),
    ],
)
def test_focal_pt_table(gamma: float, row: list[float]) -> None:
    p_t = t64([0.1, 0.5, 0.9, 0.99])
    close(L.focal_loss_pt(p_t, gamma=gamma), row, tol=1e-8 if gamma < 2 else 1e-8 + 5e-9)
    # The same numbers through the logit form, for a positive (alpha=-1) and a negative example.
    for target in (0, 1):
        x = L.logit_from_pt(p_t, target)
        close(L.focal_loss(x, torch.full_like(x, target), alpha=-1, gamma=gamma), row, tol=1e-8)


def test_focal_hundredfold_at_0_9() -> None:
    p_t = t64([0.9, 0.968])
    ratio = L.focal_loss_pt(p_t, gamma=0) / L.focal_loss_pt(p_t, gamma=2)
    close(ratio, [100.0, 1 / 0.032**2], tol=1e-9)


def test_focal_grad_pt_matches_autograd() -> None:
    p_t = t64([0.05, 0.3, 0.5, 0.9, 0.999])
    for gamma in (0, 0.5, 1, 2, 5):
        close(L.focal_grad_pt(p_t, gamma, 0.25), autograd(L.focal_loss_pt, p_t, gamma, 0.25), tol=1e-10)
    # At p_t = 1 the loss is flat for gamma > 1 and for the one-sided limit of 0 < gamma < 1.
    assert L.focal_grad_pt(t64([1.0]), 2.0).item() == 0
    assert torch.isfinite(L.focal_grad_pt(t64([1.0]), 0.5)).all()
    close(L.modulating_factor(t64([0.9]), 2.0), [0.01], tol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_focal_equals_torchvision_random(dtype) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2000, generator=g, dtype=dtype) * 4
    y = (torch.rand(2000, generator=g, dtype=dtype) < 0.3).to(dtype)
    tol = 1e-12 if dtype == F64 else 1e-6
    for alpha, gamma in ((0.25, 2.0), (-1, 0.5), (0.75, 0.0), (0.5, 5.0)):
        close(L.focal_loss(x, y, alpha, gamma), sigmoid_focal_loss(x, y, alpha, gamma), tol=tol)
        close(
            autograd(L.focal_loss, x, y, alpha, gamma),
            autograd(lambda z, a=alpha, gm=gamma: sigmoid_focal_loss(z, y, a, gm), x),
            tol=tol,
        )
        # The closed form rounds differently from autograd's chain: relative tolerance in float32.
        rtol = 0.0 if dtype == F64 else 1e-5
        close(L.focal_loss_grad(x, y, alpha, gamma), autograd(L.focal_loss, x, y, alpha, gamma), tol=tol, rtol=rtol)


# ---------------------------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ---------------------------------------------------------------------------------------------------------------

logit_lists = st.lists(st.floats(-30, 30, allow_nan=False), min_size=1, max_size=16)


@FAST
@given(logit_lists, st.integers(0, 2**16), st.floats(0.0, 1.0), st.floats(0.0, 5.0))
def test_focal_le_alpha_ce(xs: list[float], seed: int, alpha: float, gamma: float) -> None:
    x = t64(xs)
    y = (torch.rand(len(xs), generator=torch.Generator().manual_seed(seed), dtype=F64) < 0.5).to(F64)
    assert (L.focal_loss(x, y, alpha, gamma) <= L.alpha_ce_loss(x, y, alpha) + 1e-12).all()
    assert (L.focal_loss(x, y, -1, gamma) <= L.ce_loss(x, y) + 1e-12).all()


@FAST
@given(logit_lists, st.integers(0, 2**16), st.floats(0.0, 1.0))
def test_gamma_zero_is_alpha_ce(xs: list[float], seed: int, alpha: float) -> None:
    x = t64(xs)
    y = (torch.rand(len(xs), generator=torch.Generator().manual_seed(seed), dtype=F64) < 0.5).to(F64)
    close(L.focal_loss(x, y, alpha, 0.0), L.alpha_ce_loss(x, y, alpha), tol=1e-12)
    close(autograd(L.focal_loss, x, y, alpha, 0.0), autograd(L.alpha_ce_loss, x, y, alpha), tol=1e-12)
    close(L.focal_loss_grad(x, y, alpha, 0.0), L.alpha_ce_grad(x, y, alpha), tol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_error() -> None:
    x, y = t64([0.0, 1.0]), t64([0.0, 1.0])
    with pytest.raises(ValueError, match=r"alpha=1\.5"):
        L.focal_loss(x, y, alpha=1.5)
    with pytest.raises(ValueError, match="gamma=-1"):
        L.focal_loss(x, y, gamma=-1)
    with pytest.raises(ValueError, match="shape"):
        L.ce_loss(x, t64([0.0]))
    with pytest.raises(ValueError, match="float32 or float64"):
        L.ce_loss(torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="0 or 1"):
        L.focal_loss_grad(x, t64([0.0, 0.5]))
    with pytest.raises(ValueError, match="gamma=0"):
        L.fl_star_loss(x, y, gamma=0)
    with pytest.raises(ValueError, match="p_t must lie"):
        L.logit_from_pt(t64([0.0, 0.5]))


def test_empty_inputs() -> None:
    assert L.focal_loss(torch.zeros(0, dtype=F64), torch.zeros(0, dtype=F64)).shape == (0,)


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(L, raise_on_error=False).failed == 0
