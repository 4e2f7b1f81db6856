"""explorer.dataset.memory: sizes in words, the budget's sentence, freed memory handed back."""

from __future__ import annotations

import platform
import sys

import pytest

from explorer.dataset import memory


def test_megabytes_and_the_refusal_sentence():
    assert memory.megabytes(448_071_405) == "448 MB" and memory.megabytes(2_500_000) == "2.5 MB"
    text = memory.memory_refusal(3_857_000_000, 1.1, 2048 * 2**20)
    assert text == (
        "loading it needs about 4243 MB of memory, over this server's budget of 2147 MB (FOCALSCOPE_DATASET_MEMORY_MB)"
    )


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim only"
)
def test_release_free_memory_finds_glibc_malloc_trim():
    assert memory._malloc_trim() is not None
    memory.release_free_memory()  # returns nothing, raises nothing
