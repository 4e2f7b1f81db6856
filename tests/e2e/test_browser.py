"""Real-browser test: serve the app with `streamlit run`, open every page in headless Chromium, look at it.

Each page is opened by its URL on a freshly started server (a deep link), and once more by clicking its link in the
sidebar. A page passes when its title is shown, the script finished, and no exception or error box is on screen.
Screenshots land in test-output/e2e/.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import OUT, PAGES, Server, assert_clean, wait_until_done

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("path", "title"), PAGES, ids=[t for _, t in PAGES])
def test_deep_link_on_fresh_server(browser, path, title):
    with Server() as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{server.url}/{path}")
        wait_until_done(page, title)
        assert_clean(page, title, f"deep-{path or 'home'}")
        page.close()


def test_sidebar_navigation_reaches_every_page(browser):
    with Server() as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server.url)
        wait_until_done(page, "FocalScope")
        for path, title in PAGES[1:]:
            page.locator(f'[data-testid="stSidebar"] a[href$="{path}"]').first.click()
            wait_until_done(page, title)
            assert page.url.rstrip("/").endswith(path)
            assert_clean(page, title, f"nav-{path}")
        page.close()


#: (width, height) of the screenshots: a laptop, and a narrow window (Streamlit stacks columns below 640 px).
SCREEN_SIZES = [(1280, 800), (800, 900)]
MAX_SHOT_HEIGHT = 16_000


def _full_page_shot(page, path) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its app container, not the document, so the
    viewport is stretched to the content's height for the shot (width unchanged), then restored."""
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(document.documentElement.scrollHeight,
            ...[...document.querySelectorAll('[data-testid="stAppViewContainer"], [data-testid="stMain"],'
                + ' section.main, [data-testid="stSidebarContent"]')].map(e => e.scrollHeight))"""
    )
    height = int(min(max(height, size["height"]), MAX_SHOT_HEIGHT))
    if height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(1500)  # plotly relayouts on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def test_screenshots_of_every_page_at_two_widths(browser):
    """Every page at 1280x800 and 800x900, saved as test-output/e2e/<page>-<width>.png; nothing broken at either."""
    with Server() as server:
        for width, height in SCREEN_SIZES:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            try:
                for path, title in PAGES:
                    page.goto(f"{server.url}/{path}")
                    wait_until_done(page, title)
                    slug = (path or "home").lower().replace("_", "-")
                    _full_page_shot(page, OUT / f"{slug}-{width}.png")
                    assert_clean(page, title)
            finally:
                context.close()
