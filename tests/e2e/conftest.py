"""Fixtures of the browser tests: one headless Chromium per test session (see harness.py for the server)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from explorer import synthetic
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, chromium_path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    synthetic.sample_dataset()  # generate the cached sample before any page needs it
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
