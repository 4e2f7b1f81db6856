"""Real-browser test: serve the app with `streamlit run`, open every page in headless Chromium, look at it.

Each page is opened by its URL on a freshly started server (a deep link), and once more by clicking its link in the
sidebar. A page passes when its title is shown, the script finished, and no exception or error box is on screen.
Screenshots land in test-output/e2e/.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import PAGES, Server, assert_clean, wait_until_done

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
