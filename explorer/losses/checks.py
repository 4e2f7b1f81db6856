"""Argument checks shared by the loss modules and their curve tables: tensor pairs, alpha, non-negative
parameters, grid sizes.

Each check raises ``ValueError`` naming the bad value, as torchvision's losses do; the pair check also casts the
second tensor to the first's floating dtype so the losses can mix float32 targets with float64 logits.

Example:
    >>> check_alpha(0.25)
    >>> check_alpha(1.5)
    Traceback (most recent call last):
    ...
    ValueError: alpha=1.5 is invalid: alpha must be in [0, 1] or -1 to disable it
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["FLOAT_TYPES", "check_alpha", "check_count", "check_nonnegative", "check_pair"]

#: The dtypes every loss accepts.
FLOAT_TYPES = (torch.float32, torch.float64)


def check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks two tensors have the same shape; casts the second to the first's floating dtype."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"{names[0]} and {names[1]} must be torch tensors, got {type(a).__name__}, {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} shape {tuple(a.shape)} differs from {names[1]} shape {tuple(b.shape)}")
    if a.dtype not in FLOAT_TYPES:
        raise ValueError(f"{names[0]} must be float32 or float64, got {a.dtype}")
    return a, b.to(a.dtype)


def check_alpha(alpha: float, *, allow_disable: bool = True) -> None:
    """alpha in [0, 1], or -1 (alpha disabled) when ``allow_disable``."""
    if not (0 <= alpha <= 1) and not (allow_disable and alpha == -1):
        hint = " or -1 to disable it" if allow_disable else ""
        raise ValueError(f"alpha={alpha} is invalid: alpha must be in [0, 1]{hint}")


def check_nonnegative(value: float, name: str) -> None:
    """A finite number >= 0 (gamma, beta): NaN and infinity are refused too."""
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{name}={value} is invalid: it must be a finite number >= 0")


def check_count(n: int, name: str = "n", low: int = 2) -> None:
    """An integer >= ``low``: the number of grid points (or bins) of a curve table."""
    if not isinstance(n, int | np.integer) or n < low:
        raise ValueError(f"{name}={n} is invalid: it must be an integer >= {low}")
