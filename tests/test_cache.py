"""explorer.cache: the bounded LRU of the shared server caches (entries and bytes) and the byte measure."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from explorer.cache import BoundedCache, TooLargeError, nbytes


def test_evicts_least_recently_used_by_count():
    cache = BoundedCache(max_entries=2, max_bytes=1000, sizeof=len)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # "a" is now the most recent
    cache.put("c", b"3")
    assert cache.lru_keys() == ["a", "c"]


def test_evicts_by_bytes_until_within_budget():
    cache = BoundedCache(max_entries=10, max_bytes=100, sizeof=len)
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    cache.put("c", b"x" * 40)  # 120 > 100: "a" goes
    assert cache.lru_keys() == ["b", "c"] and cache.nbytes == 80
    cache.put("d", b"x" * 90)  # only "d" fits
    assert cache.lru_keys() == ["d"] and cache.nbytes == 90
    cache.put("d", b"x" * 10)  # replacing a key counts its new size only
    assert cache.nbytes == 10 and len(cache) == 1


def test_a_value_larger_than_the_budget_is_refused_and_evicts_nothing():
    cache = BoundedCache(max_entries=3, max_bytes=100, sizeof=len)
    cache.put("a", b"x" * 50)
    with pytest.raises(TooLargeError, match="budget"):
        cache.put("big", b"x" * 101)
    assert cache.lru_keys() == ["a"]
    with pytest.raises(TooLargeError):
        cache.get_or_create("big", lambda: b"x" * 101)
    assert "big" not in cache


@pytest.mark.parametrize(("entries", "size"), [(0, 1), (1, 0)])
def test_bounds_must_be_positive(entries, size):
    with pytest.raises(ValueError, match="at least 1"):
        BoundedCache(entries, size)


def test_get_or_create_builds_once_for_concurrent_requests():
    cache = BoundedCache(max_entries=2, max_bytes=1000, sizeof=len)
    calls = []

    def build():
        calls.append(1)
        time.sleep(0.05)
        return b"model"

    threads = [threading.Thread(target=cache.get_or_create, args=("k", build)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.get("k") == b"model"


def test_nbytes_measures_arrays_tensors_tables_and_containers():
    arr = np.zeros((100, 4), np.float32)
    assert nbytes(arr) == 1600
    assert nbytes(torch.zeros(10, dtype=torch.float64)) == 80
    df = pd.DataFrame({"a": np.arange(1000, dtype=np.int64)})
    assert nbytes(df) >= 8000
    assert nbytes((arr, arr)) < 2 * 1600  # the same array is counted once
    assert nbytes({"x": arr, "y": b"12345"}) >= 1605
