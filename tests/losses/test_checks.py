"""Tests of explorer.losses.checks: the argument checks every loss and curve table shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.losses import checks


def test_check_pair_casts_the_second_to_the_first_dtype() -> None:
    a, b = checks.check_pair(torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float32), ("a", "b"))
    assert a.dtype == b.dtype == torch.float64
    with pytest.raises(ValueError, match="must be torch tensors"):
        checks.check_pair(np.zeros(3), torch.zeros(3), ("a", "b"))


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_check_nonnegative_refuses_negative_nan_and_infinity(value: float) -> None:
    with pytest.raises(ValueError, match="gamma="):
        checks.check_nonnegative(value, "gamma")


def test_check_count() -> None:
    checks.check_count(2)
    checks.check_count(np.int64(5))
    with pytest.raises(ValueError, match="n_bins=0"):
        checks.check_count(0, "n_bins", low=1)
    with pytest.raises(ValueError, match=r"n=2\.5"):
        checks.check_count(2.5)


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(checks).failed == 0
