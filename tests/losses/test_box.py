"""Tests of explorer.losses.box (L1, smooth L1, the IoU family, RIoU) against reference.md sections 2.2 and 7.3,
torchvision, autograd and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from explorer.losses import box as L
from tests.losses.helpers import F64, FAST, autograd, close, t64

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
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        L.giou_loss(t64([[0, 0, 1]]), t64([[0, 0, 1]]))
    with pytest.raises(ValueError, match="x2 < x1"):
        L.iou_loss(t64([[5, 0, 1, 1]]), t64([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"beta=1\.0"):
        L.riou_loss_from_iou(t64([0.5]), beta=1.0)


def test_empty_inputs() -> None:
    empty = torch.zeros((0, 4), dtype=F64)
    for fn in (L.iou_loss, L.log_iou_loss, L.giou_loss, L.diou_loss, L.ciou_loss, L.riou_loss):
        assert fn(empty, empty).shape == (0,)


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(L, raise_on_error=False).failed == 0


def test_ciou_ultralytics_is_ciou_with_its_own_eps() -> None:
    """Ultralytics' CIoU (eps on heights, union, diagonal) equals torchvision's up to those eps on sizable boxes,
    and keeps the trailing dimension of its ``chunk``."""
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    b1 = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=gen) * 50], dim=1)
    b2 = b1 + torch.randn(200, 4, generator=gen) * 4
    b2 = torch.cat([torch.minimum(b2[:, :2], b2[:, 2:] - 1), b2[:, 2:]], dim=1)
    ours = L.ciou_ultralytics(b1, b2)
    assert ours.shape == (200, 1)
    torch.testing.assert_close(ours[:, 0], L.ciou(b1, b2), rtol=0, atol=2e-5)
    same = L.ciou_ultralytics(b1, b1)[:, 0]
    assert (same > 1 - 1e-6).all() and (same <= 1).all()
