"""Two sessions on one server must not see each other's images (issue 9: the cross-session leak).

Session A uploads a tiny COCO JSON with a zip holding ``private_photo.png`` (saturated magenta), turns low-quality
matches off, and opens "Boxes without a positive": its 1x1 box is below every anchor's IoU 0.5, so its crop is shown.
Session B, in another browser context (its own cookies, its own Streamlit session), uploads the same JSON with a
zip that lacks the image. B must be warned that no image matches and must not be shown a single magenta pixel:
before the fix, the crop cache was keyed on the JSON digest and the configuration only, so B got A's crops.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import Server, problems, wait_until_done

pytestmark = pytest.mark.e2e

TITLE = "Dataset diagnostics"
PRIVATE = "private_photo.png"
MAGENTA = (255, 0, 255)
TAB = "Boxes without a positive"


def _png(rgb: tuple[int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
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


def _upload_and_open(page, url: str, zip_name: str, zip_bytes: bytes) -> None:
    """Dataset diagnostics in ``page``: upload the JSON and a zip, low-quality matches off, open the tab."""
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
    page.get_by_role("tab", name=TAB).click()
    page.get_by_text("low-quality matches are off").first.wait_for(timeout=30_000)
    wait_until_done(page)


def _shown_images(page) -> list[bytes]:
    """The bytes of every <img> in the main area, fetched through the page's own context (same session cookies)."""
    out = []
    for src in page.locator('[data-testid="stMain"] img').evaluate_all("els => els.map(e => e.src)"):
        if src.startswith("data:"):
            continue
        response = page.context.request.get(src, timeout=15_000)
        if response.ok:
            out.append(response.body())
    return out


def test_second_session_never_sees_the_first_sessions_crops(browser):
    zip_a = _zip({PRIVATE: _png(MAGENTA)})
    zip_b = _zip({"unrelated.png": _png((0, 160, 0))})
    with Server() as server:
        ctx_a = browser.new_context(viewport={"width": 1400, "height": 1800})
        ctx_b = browser.new_context(viewport={"width": 1400, "height": 1800})
        try:
            a = ctx_a.new_page()
            _upload_and_open(a, server.url, "with_private.zip", zip_a)
            assert not problems(a), problems(a)
            images_a = _shown_images(a)
            # the control: A itself does see its crop, else the check on B below proves nothing
            assert any(_magenta_share(png) > 0.2 for png in images_a), f"A shows no magenta crop ({len(images_a)} img)"

            b = ctx_b.new_page()
            _upload_and_open(b, server.url, "without_private.zip", zip_b)
            b.screenshot(path=str(server.log.parent / "sessions-b.png"), full_page=True)
            assert not problems(b), problems(b)
            warnings = b.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
            assert any(re.search(re.escape(PRIVATE), w) for w in warnings), f"B is not warned: {warnings}"
            images_b = _shown_images(b)
            leaked = [png for png in images_b if _magenta_share(png) > 0.01]
            assert not leaked, f"session B is shown {len(leaked)} image(s) with session A's magenta pixels"
            panel = b.get_by_role("tabpanel", name=TAB)
            assert panel.locator('[data-testid="stImage"]').count() == 0, "B's zip has no matching image, yet crops"
        finally:
            ctx_a.close()
            ctx_b.close()
