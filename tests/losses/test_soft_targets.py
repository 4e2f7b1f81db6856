"""Tests of explorer.losses.soft_targets (QFL, Varifocal, DFL) against reference.md section 7.2, autograd and
properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from explorer.losses import soft_targets as L
from tests.losses.helpers import F64, FAST, autograd, close, t64

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


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_error() -> None:
    x = t64([0.0, 1.0])
    with pytest.raises(ValueError, match=r"soft_targets must lie in \[0, 1\]"):
        L.qfl_loss(x, t64([0.0, 1.5]))


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(L, raise_on_error=False).failed == 0
