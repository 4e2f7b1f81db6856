"""Anchor configurations as text: the one parser of "sizes per level" and "aspect ratios" that the CLI, the Anchor
lab and Dataset diagnostics share, and the fitted anchors of a ``fit-anchors`` report.

Sizes are written level by level, P3 first, levels separated by ``;`` and sizes by ``,``
(``"32,40,50; 64,80,101"``); integral values stay integers, as torchvision's default sizes are. Ratios are h / w,
separated by ``,``. Levels get strides ``8, 16, 32, ...`` (P3 upwards) unless the caller says otherwise.

Example:
    >>> parse_sizes("32,40,50; 64,80,101")
    ((32, 40, 50), (64, 80, 101))
    >>> parse_ratios("0.5, 1, 2")
    (0.5, 1.0, 2.0)
    >>> format_sizes(((32, 40, 50), (64.5,)))
    '32, 40, 50; 64.5'
    >>> custom_config(((16, 20), (32, 40)), (1.0,)).strides
    (8, 16)
"""

from __future__ import annotations

import dataclasses
import json
import math

from explorer.anchors.grid import AnchorConfig, default_config

#: Most levels a custom configuration may have (P3..P9): more have no feature map at any sane input size.
MAX_LEVELS = 7
#: Most sizes per level and ratios (anchors per location stays a few dozen at most).
MAX_PER_LEVEL = 8


def _numbers(text: str, what: str) -> tuple[float, ...]:
    head = f"{what}: " if what else ""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ValueError(f"{head}expected at least one number, got {text!r}")
    try:
        values = tuple(float(p) for p in parts if p)
    except ValueError:
        raise ValueError(f"{head}expected comma-separated numbers, got {text!r}") from None
    if not all(map(math.isfinite, values)):
        raise ValueError(f"{head}expected finite numbers (no inf or nan), got {text!r}")
    return values


def parse_numbers(text: str, what: str = "") -> tuple[float, ...]:
    """Comma-separated finite numbers; ``ValueError`` (naming ``what`` when given) otherwise.

    Example:
        >>> parse_numbers("8, 16")
        (8.0, 16.0)
    """
    return _numbers(text, what)


def _plain(v: float) -> float:
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def parse_sizes(text: str) -> tuple[tuple[float, ...], ...]:
    """``"32,40,50; 64,80,101"`` -> ``((32, 40, 50), (64, 80, 101))``: anchor sizes per level, P3 first.

    Raises:
        ValueError: no level, a level that is not comma-separated numbers, or more than :data:`MAX_LEVELS`
            levels or :data:`MAX_PER_LEVEL` sizes in a level (the sizes themselves are checked by
            :class:`~explorer.anchors.grid.AnchorConfig`).
    """
    levels = [p for p in str(text).split(";") if p.strip()]
    if not levels:
        raise ValueError(f"anchor sizes: expected sizes per level like '32,40,50; 64,80,101', got {text!r}")
    if len(levels) > MAX_LEVELS:
        raise ValueError(f"anchor sizes: at most {MAX_LEVELS} levels, got {len(levels)}")
    out = []
    for k, part in enumerate(levels):
        values = _numbers(part, f"anchor sizes of level {k + 1}")
        if len(values) > MAX_PER_LEVEL:
            raise ValueError(f"anchor sizes: at most {MAX_PER_LEVEL} per level, got {len(values)} at level {k + 1}")
        out.append(tuple(_plain(v) for v in values))
    return tuple(out)


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"0.5, 1, 2"`` -> ``(0.5, 1.0, 2.0)`` (h / w), at most :data:`MAX_PER_LEVEL` of them."""
    values = _numbers(text, "aspect ratios")
    if len(values) > MAX_PER_LEVEL:
        raise ValueError(f"aspect ratios: at most {MAX_PER_LEVEL}, got {len(values)}")
    return tuple(float(v) for v in values)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))  # repr: the shortest text that reads back


def format_sizes(sizes: tuple[tuple[float, ...], ...]) -> str:
    """The text :func:`parse_sizes` reads back (values printed exactly, integers without a decimal point)."""
    return "; ".join(", ".join(_fmt(v) for v in level) for level in sizes)


def format_ratios(ratios: tuple[float, ...]) -> str:
    """The text :func:`parse_ratios` reads back."""
    return ", ".join(_fmt(v) for v in ratios)


def custom_config(
    sizes: tuple[tuple[float, ...], ...], ratios: tuple[float, ...], base: AnchorConfig | None = None
) -> AnchorConfig:
    """``base`` (torchvision's default) with these sizes and ratios; the strides follow the number of levels,
    ``8 * 2**k`` from P3 (``ValueError`` from :class:`AnchorConfig` for sizes or ratios out of range)."""
    base = base or default_config()
    strides = tuple(8 * 2**k for k in range(len(sizes)))
    return dataclasses.replace(base, sizes=tuple(sizes), aspect_ratios=tuple(ratios), strides=strides)


def anchors_from_report(data: bytes | str | dict) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    """The fitted (sizes, ratios) of a ``fit-anchors`` report (its ``torchvision`` section).

    Raises:
        ValueError: not JSON, or no ``torchvision`` section with ``sizes`` per level and ``aspect_ratios``.
    """
    try:
        report = data if isinstance(data, dict) else json.loads(data)
        section = report["torchvision"]
        sizes = tuple(tuple(_plain(float(v)) for v in level) for level in section["sizes"])
        ratio_lists = section["aspect_ratios"]
        ratios = tuple(float(v) for v in ratio_lists[0])
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        raise ValueError(
            "not a fit-anchors report: expected JSON with torchvision.sizes and torchvision.aspect_ratios"
        ) from None
    if any(tuple(map(float, r)) != ratios for r in ratio_lists):
        raise ValueError("the report's aspect ratios differ between levels; FocalScope shares one list")
    return sizes, ratios
