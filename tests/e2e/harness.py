"""Shared driver of the browser tests and of bench/load_test.py: the server, Chromium, waiting, judging a page.

Everything here talks to a `streamlit run app.py` started on a free loopback port; nothing leaves 127.0.0.1.
Every wait is bounded in time. Screenshots and server logs land in test-output/e2e/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ui.common import PAGES as NAV_PAGES

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
#: Elements shown while a script runs (the top-right status, spinners, skeletons of a page still loading).
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]'
EXCEPTION = '[data-testid="stException"]'
ERROR = '[data-testid="stAlertContentError"]'


def chromium_path() -> str | None:
    """Debian's chromium, or None when it is not installed."""
    return CHROMIUM if Path(CHROMIUM).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` on a free loopback port, stopped on exit.

    Args:
        env: extra environment variables for the server (e.g. ``{"FOCALSCOPE_HOSTED": "1"}``).
        startup_s: how long to wait for ``/_stcore/health``.
    """

    def __init__(self, *, env: dict[str, str] | None = None, startup_s: float = 60) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = OUT / f"server-{self.port}.log"
        self.env = env or {}
        self.startup_s = startup_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        OUT.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
        cmd += ["--server.port", str(self.port), "--server.address", "127.0.0.1"]
        cmd += ["--browser.gatherUsageStats", "false"]
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"streamlit did not become healthy:\n{self.log.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def peak_rss_bytes(self) -> int:
        """Peak resident memory (VmHWM) of the server and its child processes, summed; 0 once it has exited."""
        if self.proc is None:
            return 0
        return sum(_status_kb(pid, "VmHWM") for pid in _process_tree(self.proc.pid)) * 1024

    def rss_bytes(self) -> int:
        """Current resident memory (VmRSS) of the server and its child processes, summed."""
        if self.proc is None:
            return 0
        return sum(_status_kb(pid, "VmRSS") for pid in _process_tree(self.proc.pid)) * 1024


def _process_tree(pid: int, limit: int = 64) -> list[int]:
    """``pid`` and its descendants (through /proc/<pid>/task/*/children), at most ``limit`` of them."""
    out, todo = [], [pid]
    while todo and len(out) < limit:
        p = todo.pop()
        out.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue
    return out


def _status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------- waiting and judging (sync Playwright)


def wait_until_done(page, title: str | None = None, *, timeout_ms: int = 120_000, quiet_s: float = 1.5) -> float:
    """Wait for the page title (if given), then for the script run to finish: no busy element for ``quiet_s``.

    Returns the monotonic time at which the page last became quiet (the end of the run, give or take a poll).
    Raises AssertionError when the page is still busy after ``timeout_ms``.
    """
    if title is not None:
        page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        if page.locator(BUSY).count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > quiet_s:
            return quiet_since
        page.wait_for_timeout(200)
    raise AssertionError(f"page {title!r} still running after {timeout_ms / 1000:.0f} s")


def problems(page) -> list[str]:
    """The texts of the exception and error boxes on the page (empty when the page is clean)."""
    found = []
    for selector in (EXCEPTION, ERROR):
        loc = page.locator(selector)
        found += [f"{selector}: {loc.nth(k).inner_text()[:2000]}" for k in range(min(loc.count(), 5))]
    return found


def assert_clean(page, title: str, shot: str | None = None, *, full_page: bool = True) -> None:
    """No exception or error box, the title shown, more than a stub of text; a screenshot when ``shot`` is set."""
    page.wait_for_timeout(500)
    if shot:
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / f"{shot}.png"), full_page=full_page)
    found = problems(page)
    assert not found, f"{title}: " + "\n".join(found)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert title in main
    assert len(main) > 200, f"{title}: the page shows almost nothing"
