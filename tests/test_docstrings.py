"""Every docstring example in the core runs and prints what it says (the examples are the first documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import explorer

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(explorer.__path__, "explorer.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
