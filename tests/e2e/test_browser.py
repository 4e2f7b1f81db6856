"""Real-browser test: serve the app with `streamlit run`, open every page in headless Chromium, look at it.

Each page is opened by its URL on a freshly started server (a deep link), and once more by clicking its link in the
sidebar. A page passes when its title is shown, the script finished, and no exception or error box is on screen.
Screenshots land in test-output/e2e/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorer import synthetic
from ui.common import PAGES as NAV_PAGES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# (url path, title) for the home page and each page file; a page file missing from ui.common.PAGES fails here.
TITLES = {Path(path).name: title for path, title, _icon in NAV_PAGES}
PAGES = [("", "FocalScope")] + [
    (re.sub(r"^\d+_", "", p.stem), TITLES[p.name]) for p in sorted((ROOT / "pages").glob("*.py"))
]


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` on a free local port, stopped on exit."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = OUT / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        OUT.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
        cmd += ["--server.port", str(self.port), "--server.address", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"streamlit did not become healthy:\n{self.log.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    path = _chromium()
    synthetic.sample_dataset()  # generate the cached sample before any page needs it
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _wait_until_done(page, title: str, timeout_ms: int = 120_000) -> None:
    """Wait for the page title, then for the script run to finish (no 'running' status for a while)."""
    page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        busy = page.locator(
            '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]'
        ).count()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"page {title!r} still running after {timeout_ms / 1000:.0f} s")


def _assert_clean(page, title: str, shot: str) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUT / f"{shot}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{title}: exception shown: {exceptions.first.inner_text()[:2000]}"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{title}: error shown: {errors.first.inner_text()[:2000]}"
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert title in main
    assert len(main) > 200, f"{title}: the page shows almost nothing"


@pytest.mark.parametrize(("path", "title"), PAGES, ids=[t for _, t in PAGES])
def test_deep_link_on_fresh_server(browser, path, title):
    with Server() as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{server.url}/{path}")
        _wait_until_done(page, title)
        _assert_clean(page, title, f"deep-{path or 'home'}")
        page.close()


def test_sidebar_navigation_reaches_every_page(browser):
    with Server() as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server.url)
        _wait_until_done(page, "FocalScope")
        for path, title in PAGES[1:]:
            page.locator(f'[data-testid="stSidebar"] a[href$="{path}"]').first.click()
            _wait_until_done(page, title)
            assert page.url.rstrip("/").endswith(path)
            _assert_clean(page, title, f"nav-{path}")
        page.close()
