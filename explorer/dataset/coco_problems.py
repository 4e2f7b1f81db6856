"""The problems table of the COCO reader and the checks of single JSON values it is built from.

:class:`Problems` accumulates one row per problem (:data:`PROBLEM_COLUMNS`: severity, kind, image id, annotation
id, message); the value checks say whether a JSON value fits the arrays (an id in int64, a number in float64, an
image side in 1..:data:`MAX_IMAGE_SIDE`) and write values into messages safely (cut, never crashing on deep or
huge values). :mod:`explorer.dataset.coco_records` uses them record by record.

Example:
    >>> image_side_problem(640), short([1, 2, 3]), is_id(""), as_float(10**400)
    (None, '[1, 2, 3]', False, inf)
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
PROBLEM_COLUMNS: tuple[str, ...] = ("severity", "kind", "image_id", "annotation_id", "message")

#: Largest image width or height (px) accepted; a larger image is dropped with an ``image_size`` problem. The
#: widest real datasets (aerial mosaics, whole-slide tiles) stay under it; a larger value is a corrupt record.
MAX_IMAGE_SIDE = 100_000

#: Range of the int64 arrays that hold ids and flags; a JSON integer outside it is a per-record problem.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


#: A key absent from a record (distinct from a JSON ``null``).
MISSING = object()


class Problems:
    """Accumulates problem rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Any, Any, str]] = []

    def add(self, severity: str, kind: str, message: str, *, image_id: Any = None, annotation_id: Any = None) -> None:
        self.rows.append((severity, kind, _id_or_none(image_id), _id_or_none(annotation_id), message))

    def frame(self) -> pd.DataFrame:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(PROBLEM_COLUMNS)
        data: dict[str, Any] = {}
        for col, values in zip(PROBLEM_COLUMNS, columns, strict=True):
            if col in ("image_id", "annotation_id"):
                if all(v is None or type(v) is int for v in values):
                    data[col] = pd.array(list(values), dtype="Int64")
                else:
                    data[col] = pd.array([None if v is None else str(v) for v in values], dtype="string")
            elif col == "severity":
                data[col] = pd.Categorical(list(values), categories=list(SEVERITIES))
            else:
                data[col] = pd.array(list(values), dtype=object)
        return pd.DataFrame(data)


def _id_or_none(value: Any) -> Any:
    if value is None or value is MISSING:
        return None
    if is_int(value) or type(value) is str:
        return value
    return short(value, 40)


def short(value: Any, limit: int = 60) -> str:
    """A value as JSON text for a message, cut to ``limit`` characters (safe on deep or huge values)."""
    if value is MISSING:
        return "missing"
    try:
        text = json.dumps(value, default=repr) if _jsonable(value) else repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    except ValueError:  # an int over Python's digit limit (only from a dict built in Python)
        text = f"an integer of {value.bit_length():,} bits" if type(value) is int else type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, list, dict, bool)) or value is None


def is_int(value: Any) -> bool:
    """An int that fits in int64 (a JSON integer such as 2**70 does not, and is a per-record problem)."""
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def all_int64(values: list[Any]) -> bool:
    """Every value is an int that fits in int64 (fast: C-level type set, min and max)."""
    return set(map(type, values)) <= {int} and (not values or (min(values) >= _INT64_MIN and max(values) <= _INT64_MAX))


def is_id(value: Any) -> bool:
    return is_int(value) or (type(value) is str and value != "")


def id_text(value: Any) -> str:
    """Why an id is not valid: missing, of the wrong type, or an integer outside int64."""
    if type(value) is int:
        return f"{short(value)} does not fit in 64 bits"
    return short(value)


def is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def as_float(value: Any) -> float:
    """A JSON number as float64: NaN when not a number, infinity when it overflows float64 (10**400)."""
    if not is_number(value):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def image_side_problem(value: Any) -> str | None:
    """Why an image width or height from JSON is unusable (None when it is a whole number in 1..MAX_IMAGE_SIDE).

    Example:
        >>> image_side_problem(640), image_side_problem(float("nan")), image_side_problem(10**9)
        (None, 'NaN is not a finite number', '1000000000 is over the 100,000 px limit')
    """
    if not is_number(value):
        return short(value) if value is MISSING else f"{short(value)} is not a number"
    if type(value) is float and not math.isfinite(value):
        return f"{short(value)} is not a finite number"
    if type(value) is float and not value.is_integer():
        return f"{short(value)} is not a whole number"
    if value < 1:
        return f"{short(value)} is not positive"
    if value > MAX_IMAGE_SIDE:
        return f"{short(value)} is over the {MAX_IMAGE_SIDE:,} px limit"
    return None
