"""A small thread-safe LRU bounded by entry count and by bytes: the shared caches of a hosted server.

Streamlit's ``st.cache_resource`` bounds a cache by entries only; a server shared by a team needs a bound in bytes
(a COCO scan holds hundreds of MB, a model 150 MB). :class:`BoundedCache` keeps the most recently used values
whose sizes (``sizeof``) fit both bounds; :func:`nbytes` measures arrays, tensors, tables and the dataclasses that
hold them.

Example:
    >>> cache = BoundedCache(max_entries=2, max_bytes=100, sizeof=len)
    >>> cache.put("a", b"x" * 60); cache.put("b", b"y" * 30)
    >>> cache.put("c", b"z" * 50)  # 140 bytes > 100: "a", the least recently used, goes
    >>> cache.lru_keys(), cache.nbytes
    (['b', 'c'], 80)
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")


class TooLargeError(ValueError):
    """A value of ``size`` bytes is larger than the cache's whole byte budget ``budget``."""

    def __init__(self, size: int, budget: int) -> None:
        super().__init__(f"{size / 2**20:,.0f} MB is more than the cache's whole budget of {budget / 2**20:,.0f} MB")
        self.size = size
        self.budget = budget


class BoundedCache(Generic[V]):
    """LRU cache of at most ``max_entries`` values whose ``sizeof`` sum to at most ``max_bytes``.

    Thread-safe. :meth:`get_or_create` builds a missing value once even when several threads ask for it together
    (a second request for the same key waits for the first build instead of loading a second copy).

    Args:
        max_entries: the most values kept (>= 1).
        max_bytes: the most bytes kept (>= 1), as measured by ``sizeof``.
        sizeof: the size of a value in bytes (default :func:`nbytes`).
    """

    def __init__(self, max_entries: int, max_bytes: int, sizeof: Callable[[V], int] | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self.sizeof = sizeof or nbytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key``, evicting the least recently used values until both bounds hold.

        Raises:
            TooLargeError: ``value`` alone is larger than ``max_bytes`` (nothing is evicted then).
        """
        size = int(self.sizeof(value))
        if size > self.max_bytes:
            raise TooLargeError(size, self.max_bytes)
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (value, size)
            while len(self._items) > self.max_entries or self._nbytes() > self.max_bytes:
                self._items.popitem(last=False)

    def get_or_create(self, key: Hashable, build: Callable[[], V], *, must_fit: bool = True) -> V:
        """The value of ``key``, built by ``build()`` and kept when missing (one build per key at a time).

        Raises:
            TooLargeError: the built value is larger than ``max_bytes`` and ``must_fit`` (it is not kept); with
                ``must_fit=False`` such a value is returned without being kept.
        """
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            key_lock = self._building.setdefault(key, threading.Lock())
        try:
            with key_lock:
                value = self.get(key)
                if value is None:
                    value = build()
                    try:
                        self.put(key, value)
                    except TooLargeError:
                        if must_fit:
                            raise
        finally:
            with self._lock:
                self._building.pop(key, None)
        return value

    def pop(self, key: Hashable) -> V | None:
        """Forget ``key``; its value, or None."""
        with self._lock:
            item = self._items.pop(key, None)
        return None if item is None else item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def lru_keys(self) -> list[Hashable]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held (the sum of ``sizeof`` of the values, measured when they were put)."""
        with self._lock:
            return self._nbytes()

    def _nbytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items


def nbytes(obj: object, _seen: set[int] | None = None) -> int:
    """Approximate memory of ``obj`` in bytes: numpy arrays and torch tensors by their buffers, pandas tables by
    ``memory_usage(deep=True)``, bytes by length, and dataclasses, dicts, lists and tuples by their members (each
    object counted once). Other objects count ``sys.getsizeof``.

    Example:
        >>> nbytes({"a": np.zeros((10, 4), np.float32), "b": b"12345"}) >= 165
        True
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes) if obj.base is None or id(obj.base) not in seen else 0
    if isinstance(obj, bytes | bytearray | memoryview):
        return len(obj)
    if hasattr(obj, "memory_usage") and hasattr(obj, "columns"):  # pandas DataFrame
        return int(obj.memory_usage(deep=True).sum())
    if hasattr(obj, "memory_usage") and hasattr(obj, "dtype"):  # pandas Series
        return int(obj.memory_usage(deep=True))
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):  # torch tensor
        return int(obj.element_size() * obj.numel())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return sum(nbytes(k, seen) + nbytes(v, seen) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return sys.getsizeof(obj) + sum(nbytes(v, seen) for v in obj)
    return sys.getsizeof(obj)
