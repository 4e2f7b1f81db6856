"""Shared helpers of the loss tests: float64 tensors, autograd of a summed loss, a tolerant comparison."""

from __future__ import annotations

from collections.abc import Callable

import torch
from hypothesis import settings

F64 = torch.float64
TOL = 1e-6
#: Hypothesis settings of the property tests: 40 examples, no deadline (torch's first call is slow).
FAST = settings(max_examples=40, deadline=None)


def t64(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def autograd(fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    """Gradient of fn(x, ...).sum() with respect to x."""
    x = x.detach().clone().requires_grad_(True)
    fn(x, *args, **kwargs).sum().backward()
    return x.grad


def close(a: torch.Tensor, b: object, tol: float = TOL, rtol: float = 0.0) -> None:
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=tol, rtol=rtol)
