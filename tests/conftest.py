from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COCO_MINI = ROOT.parent / "shared" / "data" / "coco-mini"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The real MS-COCO subset beside the checkout; tests that need it skip when it is absent."""
    if not COCO_MINI.is_dir():
        pytest.skip("../shared/data/coco-mini is not present")
    return COCO_MINI
