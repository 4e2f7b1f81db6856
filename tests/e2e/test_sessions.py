"""Two sessions on one server must not see each other's images (issue 9: the cross-session leak).

Session A uploads a tiny COCO JSON with a zip holding ``private_photo.png`` (saturated magenta), turns low-quality
matches off, opens "Boxes without a positive" (its 1x1 box is below IoU 0.5 with every anchor, so its crop is
shown), then "Images" with the image's row selected (the image with its labeled anchors). Session B, in another
browser context (its own cookies, its own Streamlit session), does the same with the same JSON and a zip that lacks
the image. B must be warned that no image matches and must not be shown a single magenta pixel in either view:
before the fix, the crops were cached on the JSON digest + configuration and the anchor view on the JSON digest +
row, without the image store, so B got A's pixels.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import Server, problems, wait_until_done
from tests.helpers import zip_bytes

pytestmark = pytest.mark.e2e

TITLE = "Dataset diagnostics"
PRIVATE = "private_photo.png"
MAGENTA = (255, 0, 255)
CROPS = "Boxes without a positive"
IMAGES = "Images"


def _png(rgb: tuple[int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def _coco() -> bytes:
    """One 64x64 image with one 1x1 box: resized to 800 px it is 12.5 px wide, IoU <= 0.16 with any anchor."""
    return json.dumps(
        {
            "images": [{"id": 1, "file_name": PRIVATE, "width": 64, "height": 64}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 30, 1, 1], "area": 1, "iscrowd": 0}
            ],
            "categories": [{"id": 1, "name": "secret"}],
        }
    ).encode()


def _magenta_share(png: bytes) -> float:
    """Share of pixels of an image that are saturated magenta (R, B > 200, G < 60)."""
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    mask = (a[..., 0] > 200) & (a[..., 2] > 200) & (a[..., 1] < 60)
    return float(mask.mean()) if mask.size else 0.0


def _upload(page, url: str, zip_name: str, zip_bytes: bytes) -> None:
    """Dataset diagnostics in ``page``: upload the JSON and a zip, then turn low-quality matches off."""
    page.goto(f"{url}/Dataset_diagnostics")
    wait_until_done(page, TITLE)
    page.locator('[data-testid="stMain"]').get_by_text("Upload a COCO JSON").click()
    wait_until_done(page)
    json_input = page.locator('[data-testid="stFileUploader"]', has_text="COCO instances JSON")
    json_input.locator('input[type="file"]').set_input_files(
        {"name": "tiny.json", "mimeType": "application/json", "buffer": _coco()}
    )
    wait_until_done(page)
    zip_input = page.locator('[data-testid="stFileUploader"]', has_text="Images (optional zip)")
    zip_input.locator('input[type="file"]').set_input_files(
        {"name": zip_name, "mimeType": "application/zip", "buffer": zip_bytes}
    )
    wait_until_done(page)
    page.locator('[data-testid="stSidebar"]').get_by_text("Low-quality matches").click()
    wait_until_done(page)


def _show_tab(page, name: str) -> None:
    """Select the tab ``name`` unless it is selected (a rerun can leave a stale copy of the tab bar in the page)."""
    tabs = page.get_by_role("tab", name=name, exact=True)
    if page.get_by_role("tab", name=name, exact=True, selected=True).count() == 0:
        tabs.last.click()


def _open_crops(page) -> None:
    """The 'Boxes without a positive' tab (the crops of the unmatched boxes)."""
    _show_tab(page, CROPS)
    page.get_by_text("low-quality matches are off").first.wait_for(timeout=30_000)
    wait_until_done(page)


def _open_anchor_view(page) -> None:
    """The 'Images' tab with the first row of the images table selected (the image with its labeled anchors)."""
    _show_tab(page, IMAGES)
    grid = page.locator('[data-testid="stMain"] [role="tabpanel"]:visible [data-testid="stDataFrame"]').first
    grid.wait_for(timeout=30_000)
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the row marker of the first data row
    wait_until_done(page)
    # the rerun of a selection may show the first tab again (the page's tabs have no key): back to Images
    _show_tab(page, IMAGES)
    page.locator('[role="tabpanel"]:visible').get_by_text("Show ignored anchors").first.wait_for(timeout=30_000)
    wait_until_done(page)


def _panel_images(page) -> list[bytes]:
    """The bytes of every <img> in the open tab, fetched through the page's own context (same session cookies)."""
    out = []
    srcs = page.locator('[data-testid="stMain"] [role="tabpanel"]:visible img').evaluate_all(
        "els => els.map(e => e.src)"
    )
    for src in srcs:
        if src.startswith("data:"):
            continue
        response = page.context.request.get(src, timeout=15_000)
        if response.ok:
            out.append(response.body())
    return out


def test_second_session_never_sees_the_first_sessions_pixels(browser):
    zip_a = zip_bytes({PRIVATE: _png(MAGENTA)})
    zip_b = zip_bytes({"unrelated.png": _png((0, 160, 0))})
    views = {
        "crops ('Boxes without a positive')": _open_crops,
        "anchor view ('Images', row selected)": _open_anchor_view,
    }
    with Server() as server:
        ctx_a = browser.new_context(viewport={"width": 1400, "height": 1800})
        ctx_b = browser.new_context(viewport={"width": 1400, "height": 1800})
        try:
            a = ctx_a.new_page()
            _upload(a, server.url, "with_private.zip", zip_a)
            for name, open_view in views.items():
                open_view(a)
                assert not problems(a), problems(a)
                shown = _panel_images(a)
                # the control: A itself sees its pixels, else the check on B below proves nothing
                assert any(_magenta_share(png) > 0.2 for png in shown), f"A: no magenta in the {name}"

            b = ctx_b.new_page()
            _upload(b, server.url, "without_private.zip", zip_b)
            warnings = b.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
            assert any(PRIVATE in w for w in warnings), f"B is not warned that no image matches: {warnings}"
            leaks = []
            for name, open_view in views.items():
                open_view(b)
                b.screenshot(path=str(server.log.parent / f"sessions-b-{open_view.__name__[6:]}.png"), full_page=True)
                assert not problems(b), problems(b)
                leaked = [png for png in _panel_images(b) if _magenta_share(png) > 0.01]
                if leaked:
                    leaks.append(f"{name}: {len(leaked)} image(s) with session A's magenta pixels")
            assert not leaks, "session B (a zip without the image) is shown session A's pixels: " + "; ".join(leaks)
        finally:
            ctx_a.close()
            ctx_b.close()
