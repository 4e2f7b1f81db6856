"""Tests of explorer.losses.functions against reference.md section 7, torchvision, autograd and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from explorer.losses import functions as L

F64 = torch.float64
TOL = 1e-6
FAST = settings(max_examples=40, deadline=None)


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def autograd(fn, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Gradient of fn(x, ...).sum() with respect to x."""
    x = x.detach().clone().requires_grad_(True)
    fn(x, *args, **kwargs).sum().backward()
    return x.grad


def close(a: torch.Tensor, b, tol: float = TOL, rtol: float = 0.0) -> None:
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=tol, rtol=rtol)


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


# ---------------------------------------------------------------------------------------------------------------
# 7.2 QFL / VFL / DFL vectors
# ---------------------------------------------------------------------------------------------------------------

X72 = t64([-2, 0, 1.5, 3, -0.5])
Q72 = t64([0, 0.6, 0.9, 0, 0.3])


def test_qfl_vectors_72() -> None:
    close(L.qfl_loss(X72, Q72, beta=2), [0.00180356, 0.00693147, 0.00238749, 2.76628044, 0.00375230])
    expected_grad = [0.00487094, -0.03565736, -0.00920018, 1.12674988, 0.02321051]
    close(autograd(L.qfl_loss, X72, Q72, 2.0), expected_grad)
    close(L.qfl_grad(X72, Q72, beta=2), expected_grad)
    for beta in (0.0, 1.0, 1.5, 2.5, 4.0):
        close(L.qfl_grad(X72, Q72, beta), autograd(L.qfl_loss, X72, Q72, beta), tol=1e-12)


def test_vfl_vectors_72() -> None:
    close(L.varifocal_loss(X72, Q72), [0.00135267, 0.41588831, 0.31627195, 2.07471033, 0.18722310])
    expected_grad = [0.00365321, -0.06, -0.07418297, 0.84506241, 0.02326220]
    close(autograd(L.varifocal_loss, X72, Q72), expected_grad)
    close(L.varifocal_grad(X72, Q72), expected_grad)
    for alpha, gamma, weighted in ((0.75, 2.0, False), (0.5, 1.0, True), (1.0, 3.0, False)):
        close(
            L.varifocal_grad(X72, Q72, alpha, gamma, iou_weighted=weighted),
            autograd(L.varifocal_loss, X72, Q72, alpha, gamma, iou_weighted=weighted),
            tol=1e-12,
        )


def test_dfl_vectors_72() -> None:
    z = t64([0.1, 0.5, 2.0, 0.3, -1.0])
    for label, value in ((2.3, 0.98322928), (1.0, 1.97322928), (0.0, 2.37322928)):
        close(L.dfl_loss(z, t64(label)), value)
    expected = [0.09317934, 0.13900724, -0.07701278, -0.18619050, 0.03101671]
    close(autograd(L.dfl_loss, z, t64(2.3)), expected)
    close(L.dfl_grad(z, t64(2.3)), expected)


def test_dfl_batch_and_last_bin() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 17, dtype=F64)
    y = t64([0.0, 3.5, 7.25, 15.99, 16.0, 11.0])
    loss = L.dfl_loss(z, y)
    assert loss.shape == (6,)
    # Target exactly n: all mass on the last bin (no out-of-range right bin).
    close(loss[4], -torch.log_softmax(z[4], -1)[16], tol=1e-12)
    close(L.dfl_grad(z, y), autograd(L.dfl_loss, z, y), tol=1e-12)
    # The loss is minimal when the softmax equals the two-bin target distribution.
    w = torch.zeros(17, dtype=F64)
    w[3], w[4] = 0.5, 0.5
    best = L.dfl_loss(torch.log(w.clamp(min=1e-300)), t64(3.5))
    assert best.item() == pytest.approx(math.log(2), abs=1e-9)
    assert (loss >= 0).all()


@pytest.mark.parametrize("label", [-0.1, 4.01])
def test_dfl_rejects_out_of_range(label: float) -> None:
    with pytest.raises(ValueError, match="DFL targets"):
        L.dfl_loss(torch.zeros(5, dtype=F64), t64(label))


# ---------------------------------------------------------------------------------------------------------------
# Smooth L1 and L1 (reference.md 2.2)
# ---------------------------------------------------------------------------------------------------------------

D22 = t64([-2, -0.5, -0.05, 0, 0.05, 0.1, 0.5, 2])


@pytest.mark.parametrize(
    ("beta", "row"),
    [
        (1.0, [1.5, 0.125, 0.00125, 0, 0.00125, 0.005, 0.125, 1.5]),
        (1 / 9, [1.944444, 0.444444, 0.01125, 0, 0.01125, 0.045, 0.444444, 1.944444]),
        (0.11, [1.945, 0.445, 0.011364, 0, 0.011364, 0.045455, 0.445, 1.945]),
        (0.1, [1.95, 0.45, 0.0125, 0, 0.0125, 0.05, 0.45, 1.95]),
        (0.0, [2, 0.5, 0.05, 0, 0.05, 0.1, 0.5, 2]),
    ],
)
def test_smooth_l1_vectors(beta: float, row: list[float]) -> None:
    close(L.smooth_l1_loss(D22, beta), row, tol=5e-7)
    close(L.smooth_l1_loss(D22, beta), F.smooth_l1_loss(D22, torch.zeros_like(D22), reduction="none", beta=beta))
    close(L.smooth_l1_grad(D22, beta), autograd(L.smooth_l1_loss, D22, beta), tol=1e-12)


def test_l1() -> None:
    close(L.l1_loss(D22), D22.abs(), tol=0)
    close(L.l1_grad(D22), autograd(L.l1_loss, D22), tol=0)


# ---------------------------------------------------------------------------------------------------------------
# 7.3 box overlaps
# ---------------------------------------------------------------------------------------------------------------

B1 = t64([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 2]])
B2 = t64([[0, 0, 10, 10], [5, 5, 15, 15], [20, 0, 30, 10], [2, 2, 8, 8], [1, 0, 3, 4]])


def test_box_vectors_73() -> None:
    close(L.box_iou_pairs(B1, B2), [1, 0.14285714, 0, 0.36, 0.33333333])
    close(L.giou(B1, B2), [1, -0.07936508, -0.33333333, 0.36, 0.08333333])
    close(L.diou(B1, B2), [1, 0.03174603, -0.4, 0.36, 0.30208333])
    close(L.ciou(B1, B2), [1, 0.03174603, -0.4, 0.36, 0.26833167])
    close(L.giou_loss(B1, B2), [0, 1.07936508, 1.33333333, 0.64, 0.91666667])
    close(L.diou_loss(B1, B2), [0, 0.96825397, 1.4, 0.64, 0.69791667])
    close(L.ciou_loss(B1, B2), [0, 0.96825397, 1.4, 0.64, 0.73166833])
    close(L.iou_loss(B1, B2), [0, 0.85714286, 1, 0.64, 0.66666667])
    close(L.log_iou_loss(B1, B2), [0, math.log(7), -math.log(1e-6), -math.log(0.36), math.log(3)])


def test_box_vectors_73_float32() -> None:
    close(L.ciou_loss(B1.float(), B2.float()), [0, 0.96825397, 1.4, 0.64, 0.73166833], tol=1e-6)


def test_box_gradients_73_match_torchvision() -> None:
    pairs = (
        (L.giou_loss, generalized_box_iou_loss),
        (L.diou_loss, distance_box_iou_loss),
        (L.ciou_loss, complete_box_iou_loss),
    )
    for ours, ref in pairs:
        close(autograd(ours, B1, B2), autograd(ref, B1, B2), tol=1e-12)


def test_ciou_gated_mmdet() -> None:
    # Pair 5 (IoU 1/3): mmdet's gated CIoU equals its DIoU loss, 0.697917.
    gated = L.ciou_loss(B1, B2, gated=True)
    close(gated[4], 0.69791667)
    close(gated, L.diou_loss(B1, B2), tol=1e-6)  # every pair here has IoU <= 0.5 or v = 0
    # Above IoU 0.5 with an aspect mismatch the gate opens and matches the torchvision form closely.
    b1, b2 = t64([[0, 0, 10, 9]]), t64([[0, 0, 9, 10]])
    assert L.box_iou_pairs(b1, b2).item() > 0.5
    assert L.ciou_loss(b1, b2, gated=True).item() > L.diou_loss(b1, b2).item() + 1e-4
    close(L.ciou_loss(b1, b2, gated=True), L.ciou_loss(b1, b2), tol=1e-5)


def random_boxes(n: int, seed: int, dtype=F64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def make() -> torch.Tensor:
        xy = torch.rand(n, 2, generator=g, dtype=dtype) * 20
        wh = torch.rand(n, 2, generator=g, dtype=dtype) * 15 + 0.5
        return torch.cat([xy, xy + wh], dim=1)

    return make(), make()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_box_losses_equal_torchvision_random(dtype) -> None:
    b1, b2 = random_boxes(300, seed=1, dtype=dtype)
    tol = 1e-12 if dtype == F64 else 2e-6
    pairs = (
        (L.giou_loss, generalized_box_iou_loss),
        (L.diou_loss, distance_box_iou_loss),
        (L.ciou_loss, complete_box_iou_loss),
    )
    for ours, ref in pairs:
        close(ours(b1, b2), ref(b1, b2), tol=tol)
        close(autograd(ours, b1, b2), autograd(ref, b1, b2), tol=tol)
        # Gradient with respect to the ground-truth side too.
        close(autograd(lambda g, f=ours: f(b1, g), b2), autograd(lambda g, f=ref: f(b1, g), b2), tol=tol)


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


def test_closed_form_box_gradients_wrt_iou() -> None:
    u = torch.linspace(0.01, 1, 200, dtype=F64)
    close(L.riou_grad_iou(u), autograd(L.riou_loss_from_iou, u), tol=1e-12)
    for beta, k in ((0.5, 1.0), (0.8, 3.0)):
        close(L.riou_grad_iou(u, beta, k), autograd(L.riou_loss_from_iou, u, beta, k), tol=1e-12)


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


@FAST
@given(st.floats(0.01, 0.99), st.floats(0.0, 4.0), st.floats(-6, 6))
def test_qfl_minimal_at_sigma_equals_y(y: float, beta: float, offset: float) -> None:
    x_star = math.log(y / (1 - y))
    at_target = L.qfl_loss(t64([x_star]), t64([y]), beta).item()
    elsewhere = L.qfl_loss(t64([x_star + offset]), t64([y]), beta).item()
    assert at_target <= elsewhere + 1e-12
    if beta >= 0.5:
        assert at_target == pytest.approx(0.0, abs=1e-6)
    # The gradient vanishes at the optimum (smooth there for beta > 1) and points back to it elsewhere.
    if beta >= 2:
        assert L.qfl_grad(t64([x_star]), t64([y]), beta).item() == pytest.approx(0.0, abs=1e-12)
    if abs(offset) > 1e-3 and beta > 0:
        assert math.copysign(1, L.qfl_grad(t64([x_star + offset]), t64([y]), beta).item()) == math.copysign(1, offset)


@FAST
@given(st.floats(0.05, 0.99), st.floats(0.1, 10.0))
def test_riou_invariants(beta: float, k: float) -> None:
    u = torch.linspace(0, 1, 2001, dtype=F64)
    loss = L.riou_loss_from_iou(u, beta, k)
    grad_mag = -L.riou_grad_iou(u, beta, k)
    assert loss[-1].item() == pytest.approx(0.0, abs=1e-12)  # L(1) = 0
    assert (loss >= -1e-12).all()  # L >= 0
    assert (loss[1:] <= loss[:-1] + 1e-12).all()  # non-increasing in IoU
    below, above = L.riou_loss_from_iou(t64([beta, beta + 1e-9]), beta, k).tolist()
    assert below == pytest.approx(above, abs=1e-6)  # continuous at the breakpoint
    assert grad_mag[0].item() == pytest.approx(0.0, abs=1e-12)  # g -> 0 as u -> 0
    assert grad_mag[-1].item() == pytest.approx(0.0, abs=1e-12)  # g -> 0 as u -> 1
    if beta > 0.9:
        g = -L.riou_grad_iou(t64([0.3, 0.9]), beta, k)
        assert g[1] > g[0]  # high-IoU samples get the larger gradient


def test_riou_defaults_and_box_form() -> None:
    close(-L.riou_grad_iou(t64([0.95, 0.3, 0.9])), [1.9, 0.6, 1.8], tol=1e-12)
    u = L.box_iou_pairs(B1, B2)
    close(L.riou_loss(B1, B2), L.riou_loss_from_iou(u), tol=0)
    close(L.riou_loss(B1, B2, b=0.5), L.riou_loss_from_iou(u) + 0.5, tol=1e-15)


box_coords = st.tuples(st.floats(0, 50), st.floats(0, 50), st.floats(0.5, 40), st.floats(0.5, 40)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@FAST
@given(st.lists(st.tuples(box_coords, box_coords), min_size=1, max_size=8))
def test_iou_family_orderings(pairs) -> None:
    b1 = t64([p[0] for p in pairs])
    b2 = t64([p[1] for p in pairs])
    iou = L.box_iou_pairs(b1, b2)
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    assert (L.giou(b1, b2) <= iou + 1e-9).all() and (L.giou(b1, b2) > -1 - 1e-9).all()
    assert (L.diou(b1, b2) <= iou + 1e-9).all()
    assert (L.ciou(b1, b2) <= L.diou(b1, b2) + 1e-9).all()
    assert (L.ciou_loss(b1, b2, gated=True) <= L.ciou_loss(b1, b2) + 1e-6).all()
    close(L.giou_loss(b1, b2), generalized_box_iou_loss(b1, b2), tol=1e-12)


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
    with pytest.raises(ValueError, match=r"soft_targets must lie in \[0, 1\]"):
        L.qfl_loss(x, t64([0.0, 1.5]))
    with pytest.raises(ValueError, match="0 or 1"):
        L.focal_loss_grad(x, t64([0.0, 0.5]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        L.giou_loss(t64([[0, 0, 1]]), t64([[0, 0, 1]]))
    with pytest.raises(ValueError, match="x2 < x1"):
        L.iou_loss(t64([[5, 0, 1, 1]]), t64([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"beta=1\.0"):
        L.riou_loss_from_iou(t64([0.5]), beta=1.0)
    with pytest.raises(ValueError, match="gamma=0"):
        L.fl_star_loss(x, y, gamma=0)
    with pytest.raises(ValueError, match="p_t must lie"):
        L.logit_from_pt(t64([0.0, 0.5]))


def test_empty_inputs() -> None:
    empty = torch.zeros((0, 4), dtype=F64)
    for fn in (L.iou_loss, L.log_iou_loss, L.giou_loss, L.diou_loss, L.ciou_loss, L.riou_loss):
        assert fn(empty, empty).shape == (0,)
    assert L.focal_loss(torch.zeros(0, dtype=F64), torch.zeros(0, dtype=F64)).shape == (0,)


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(L, raise_on_error=False).failed == 0
