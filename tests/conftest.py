from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COCO_MINI = ROOT.parent / "shared" / "data" / "coco-mini"


@pytest.fixture(scope="session", autouse=True)
def _scan_kernel_compiled() -> None:
    """The dataset scan's kernel compiled (or loaded from numba's cache) once per worker before any test, so that a
    fresh checkout pays the first compile (about 10 s) here and the browser tests' servers find it cached."""
    from explorer.dataset.scan_cpu import warm_up

    warm_up()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The real MS-COCO subset beside the checkout; tests that need it skip when it is absent."""
    if not COCO_MINI.is_dir():
        pytest.skip("../shared/data/coco-mini is not present")
    return COCO_MINI


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests on the real coco-mini data (exactness against torchvision's own loop) are ``slow``, as are the few
    marked by hand that take several seconds (training steps, long page walks): the fast loop,
    ``pytest -m "not slow and not e2e"``, leaves them to the full suite.

    The suite runs on two pytest-xdist workers (``-n 2 --dist loadgroup`` in pyproject.toml). The browser tests
    run one after another on one worker, the 10-session load test as a group of its own (it is the longest test),
    and the two workers share the rest."""
    for item in items:
        if "coco_mini" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("e2e") is not None:
            group = "load" if item.path.name == "test_load.py" else "browser"
            item.add_marker(pytest.mark.xdist_group(group))
