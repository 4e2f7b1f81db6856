"""Memory of big loads: sizes in words, the refusal sentence of the memory budget, freed memory handed back.

Example:
    >>> megabytes(3_000_000_000), megabytes(1_500_000)
    ('3000 MB', '1.5 MB')
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable


def megabytes(n: float) -> str:
    """A byte count in MB, with a decimal below 10 MB so that small limits do not read as 0."""
    mb = n / 1e6
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2g} MB"


def memory_refusal(size: int, per_byte: float, budget: int) -> str:
    """The sentence that refuses a file of ``size`` bytes needing ``per_byte`` bytes of memory per byte."""
    return (
        f"loading it needs about {megabytes(size * per_byte)} of memory, over this server's budget of "
        f"{megabytes(budget)} (FOCALSCOPE_DATASET_MEMORY_MB)"
    )


def release_free_memory() -> None:
    """Hand the heap memory that is free back to the operating system (glibc's ``malloc_trim``; a no-op elsewhere).

    Decoding a big file block by block creates and frees millions of small objects; glibc keeps the freed pages,
    so without this the process's resident memory of an Objects365-scale load stays about 1.6 GB above what it
    holds (3.2 GB resident for 1.5 GB of arrays; BENCHMARKS.md). Dask's workers trim the same way.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl) or no such symbol
        return None
