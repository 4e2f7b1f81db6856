"""The hosted load scenario, shared by tests/e2e/test_load.py and bench/load_test.py.

One server (hosted mode) on loopback, N concurrent sessions: N browser contexts of one headless Chromium, driven
with Playwright's async API. Each session opens Home, then every page through the sidebar, and on each page does
one interaction (Home: none) with the sample data. A run is timed in the page itself: a MutationObserver on the
document notes every transition of the app root's ``data-test-script-state``; the time of a step is from the action
to the last transition back to ``notRunning`` (no visible spinner left). Every wait is bounded, so is the whole run.

One untimed session first walks the same path alone (the warm-up: imports, the sample scan, the demo model), so
the figures are those of a server that is already up, as teammates meet it; the warm-up time is reported apart.

Example:
    >>> report = run_load(sessions=10)  # doctest: +SKIP
    >>> report.errors, report.median_s, report.max_s, report.peak_rss_bytes  # doctest: +SKIP
    ([], 1.9, 9.7, 1_234_567_890)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from explorer import synthetic
from tests.e2e.harness import BUSY, CHROMIUM_ARGS, ERROR, EXCEPTION, OUT, PAGES, Server, chromium_path

ARM = """() => {
  if (window.__fsObs) window.__fsObs.disconnect();
  window.__fsSeen = [];
  window.__fsStart = performance.now();
  window.__fsObs = new MutationObserver((records) => {
    for (const r of records) window.__fsSeen.push([r.target.getAttribute('data-test-script-state'), performance.now()]);
  });
  window.__fsObs.observe(document.documentElement,
    {attributes: true, subtree: true, attributeFilter: ['data-test-script-state']});
}"""
# The app's state now, whether ARM ran in this document, how many transitions were seen since, the seconds from ARM
# to the last one and to now, the busy elements that are visible, whether the heading of ``title`` is shown.
STATE = """({busy, title}) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const seen = window.__fsSeen || [];
  const now = performance.now();
  const visible = [...document.querySelectorAll(busy)].filter(e => e.getClientRects().length > 0);
  return {
    state: app ? app.getAttribute('data-test-script-state') : null,
    armed: window.__fsStart !== undefined,
    seen: seen.length,
    last: seen.length ? (seen[seen.length - 1][1] - window.__fsStart) / 1000 : null,
    elapsed: (now - (window.__fsStart || now)) / 1000,
    busy: visible.map(e => e.getAttribute('data-testid')),
    heading: !!title && [...document.querySelectorAll('h1')].some(h => h.textContent.includes(title)),
  };
}"""
#: Seconds of quiet after which a step whose run the observer never saw start counts as over, untimed ("unobserved").
#: Long on purpose: under load the server may take many seconds to start the run an action requested, and a step
#: declared over too early lets the next action look for widgets of a page that is not there yet.
UNOBSERVED_AFTER_S = 45.0


@dataclass
class Timing:
    session: int
    page: str
    action: str
    seconds: float


@dataclass
class LoadReport:
    sessions: int
    timings: list[Timing] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_rss_bytes: int = 0
    wall_s: float = 0.0
    warmup_s: float = 0.0
    unobserved: int = 0
    polled: int = 0

    def interaction_times(self) -> list[float]:
        """Seconds of every timed step (page opens and interactions; unobserved steps left out)."""
        return [t.seconds for t in self.timings if t.seconds == t.seconds]

    @property
    def median_s(self) -> float:
        times = self.interaction_times()
        return statistics.median(times) if times else float("nan")

    @property
    def max_s(self) -> float:
        times = self.interaction_times()
        return max(times) if times else float("nan")

    def action_times(self) -> list[float]:
        """Seconds of the interactions only (page opens left out)."""
        return [t.seconds for t in self.timings if t.action != "open" and t.seconds == t.seconds]

    def by_step(self) -> dict[str, tuple[float, float, int]]:
        """``"page: action" -> (median s, max s, count)``, in the order the steps were first taken."""
        steps: dict[str, list[float]] = {}
        for t in self.timings:
            steps.setdefault(f"{t.page}: {t.action}", [])
            if t.seconds == t.seconds:
                steps[f"{t.page}: {t.action}"].append(t.seconds)
        return {k: (statistics.median(v), max(v), len(v)) if v else (math.nan, math.nan, 0) for k, v in steps.items()}

    def summary(self) -> str:
        lines = [
            f"{self.sessions} sessions, {len(self.timings)} steps ({self.polled} timed by polling, "
            f"{self.unobserved} with no run seen), "
            f"{len(self.errors)} error(s), "
            f"wall {self.wall_s:.1f} s after a {self.warmup_s:.1f} s warm-up session",
            f"step time median {self.median_s:.2f} s, max {self.max_s:.2f} s; interactions only median "
            f"{_median(self.action_times()):.2f} s, max {max(self.action_times(), default=math.nan):.2f} s; "
            f"server peak RSS {self.peak_rss_bytes / 2**20:,.0f} MiB",
        ]
        lines += [f"  {k:<45} median {m:6.2f} s  max {x:6.2f} s  (n={n})" for k, (m, x, n) in self.by_step().items()]
        lines += [f"  ERROR {e}" for e in self.errors]
        return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


async def _wait_finished(
    page, timeout_s: float, report: LoadReport | None, *, title: str | None = None, settle_s: float = 0.4
) -> float:
    """Wait for the armed run to end and stay ended for ``settle_s``; its duration in seconds.

    A run is over when the app is ``notRunning`` with no visible spinner, after at least one transition seen since
    the action; it is timed from the action to that transition. When no transition was seen but the run evidently
    happened (the heading of ``title``, the page navigated to, is shown; or the document was replaced), the step is
    timed by polling instead: to the start of 1.5 s of quiet (``report.polled``). When nothing happened after
    UNOBSERVED_AFTER_S of quiet (the action started no run), the step ends untimed (``report.unobserved``).
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    last, quiet_since = None, None
    while time.monotonic() < deadline:
        st = await page.evaluate(STATE, {"busy": BUSY, "title": title})
        quiet = st["state"] == "notRunning" and not st["busy"]
        if quiet and st["seen"] and last is not None and last["seen"] == st["seen"] and last["state"] == "notRunning":
            return float(st["last"])
        evident = not st["seen"] and (st["heading"] or not st["armed"])
        if quiet and evident:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.5:
                if report is not None:
                    report.polled += 1
                return quiet_since - t0
        else:
            quiet_since = None
        if quiet and not st["seen"] and st["elapsed"] > UNOBSERVED_AFTER_S:
            if report is not None:
                report.unobserved += 1
            return float("nan")
        last = st
        await asyncio.sleep(settle_s if quiet else 0.1)
    raise TimeoutError(f"still running after {timeout_s:.0f} s (last state seen: {last})")


async def _slider_right(page, scope: str, label: str) -> None:
    slider = page.locator(f'{scope} [data-testid="stSlider"]').filter(has_text=label).locator('input[type="range"]')
    await slider.first.focus()
    await slider.first.press("ArrowRight")


async def _loss_lab(page) -> None:
    await _slider_right(page, '[data-testid="stSidebar"]', "γ (focusing)")


async def _anchor_lab(page) -> None:
    await _slider_right(page, '[data-testid="stSidebar"]', "Positive IoU")


async def _dataset(page) -> None:
    await page.locator('[data-testid="stSidebar"]').get_by_text("Low-quality matches").click()


async def _detections(page) -> None:
    await _slider_right(page, '[data-testid="stMain"]', "Score threshold")


#: page title -> (what is done, how); Home has no widget to move.
INTERACTIONS: dict[str, tuple[str, Callable[[object], Awaitable[None]]]] = {
    "Loss lab": ("move γ", _loss_lab),
    "Anchor lab": ("move positive IoU", _anchor_lab),
    "Dataset diagnostics": ("low-quality matches off", _dataset),
    "Live detections": ("move score threshold", _detections),
}


async def _problems(page) -> list[str]:
    found = []
    for selector in (EXCEPTION, ERROR):
        for text in (await page.locator(selector).all_inner_texts())[:3]:
            found.append(text[:500])
    return found


async def _session(browser, url: str, k: int, report: LoadReport | None, step_timeout_s: float) -> None:
    """One session through every page; ``report=None`` is the untimed warm-up (errors still raise)."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(step_timeout_s * 1000)
    step = "Home: open"
    timings: list[Timing] = []
    try:
        page = await ctx.new_page()
        t0 = time.monotonic()
        await page.goto(url, timeout=step_timeout_s * 1000)
        await page.get_by_role("heading", name=re.compile("FocalScope")).first.wait_for(timeout=step_timeout_s * 1000)
        await page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
            timeout=step_timeout_s * 1000
        )
        await page.locator(BUSY).first.wait_for(state="detached", timeout=step_timeout_s * 1000)
        timings.append(Timing(k, "Home", "open", time.monotonic() - t0))
        for path, title in PAGES[1:]:
            step = f"{title}: open"
            await page.evaluate(ARM)
            await page.locator(f'[data-testid="stSidebar"] a[href$="{path}"]').first.click()
            seconds = await _wait_finished(page, step_timeout_s, report, title=title)
            await page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=10_000)
            timings.append(Timing(k, title, "open", seconds))
            if title in INTERACTIONS:
                action, act = INTERACTIONS[title]
                step = f"{title}: {action}"
                await page.evaluate(ARM)
                await act(page)
                timings.append(Timing(k, title, action, await _wait_finished(page, step_timeout_s, report)))
            found = [f"session {k} {title}: {p}" for p in await _problems(page)]
            if report is None and found:
                raise AssertionError("; ".join(found))
            if report is not None:
                report.errors += found
    except Exception as exc:  # a timeout or a missing widget is a failed session, reported with the others
        if report is None:
            raise
        report.errors.append(f"session {k} at {step!r}: {type(exc).__name__}: {str(exc)[:300]}")
        with contextlib.suppress(Exception):
            OUT.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(OUT / f"load-session-{k}.png"), full_page=True, timeout=20_000)
    finally:
        if report is not None:
            report.timings += timings
        await ctx.close()


async def _run(url: str, sessions: int, step_timeout_s: float, total_timeout_s: float, report: LoadReport) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            t0 = time.monotonic()
            await asyncio.wait_for(_session(browser, url, -1, None, step_timeout_s), timeout=total_timeout_s / 2)
            report.warmup_s = time.monotonic() - t0
            t0 = time.monotonic()
            jobs = [_session(browser, url, k, report, step_timeout_s) for k in range(sessions)]
            await asyncio.wait_for(asyncio.gather(*jobs), timeout=total_timeout_s - report.warmup_s)
        except TimeoutError:
            report.errors.append(f"the run did not finish within {total_timeout_s:.0f} s")
        except Exception as exc:
            report.errors.append(f"warm-up: {type(exc).__name__}: {str(exc)[:500]}")
        finally:
            report.wall_s = time.monotonic() - t0
            await browser.close()


def run_load(
    sessions: int = 10, *, step_timeout_s: float = 120, total_timeout_s: float = 300, hosted: bool = True
) -> LoadReport:
    """Serve the app, drive ``sessions`` concurrent browser sessions through every page, report times and memory.

    Args:
        sessions: concurrent browser contexts (1-50).
        step_timeout_s: the longest one page open or interaction may take.
        total_timeout_s: the longest the whole run may take.
        hosted: start the server with ``FOCALSCOPE_HOSTED=1`` (the shared-server defaults).
    """
    if not 1 <= sessions <= 50:
        raise ValueError(f"sessions must be in 1..50, got {sessions}")
    if chromium_path() is None:
        raise RuntimeError("chromium is not installed")
    synthetic.sample_dataset()  # generated once, before the server needs it
    report = LoadReport(sessions)
    with Server(env={"FOCALSCOPE_HOSTED": "1" if hosted else "0"}) as server:
        # in a thread of its own: the caller may already run an event loop (pytest with sync Playwright does)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _run(server.url, sessions, step_timeout_s, total_timeout_s, report)).result()
        report.peak_rss_bytes = server.peak_rss_bytes()
        if server.proc is not None and server.proc.poll() is not None:
            report.errors.append(f"the server exited with {server.proc.returncode}")
    return report
