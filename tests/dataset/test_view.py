"""explorer.dataset.view: how an IoU is written next to a threshold."""

from __future__ import annotations

import pytest

from explorer.dataset.view import iou_text


@pytest.mark.parametrize(
    ("iou", "threshold", "text"),
    [(0.43, 0.5, "0.43"), (0.4996, 0.5, "0.4996"), (0.49999999, 0.5, "0.49999999"), (0.5, 0.5, "0.50")],
)
def test_iou_text_never_reads_as_reaching_the_threshold(iou, threshold, text):
    assert iou_text(iou, threshold) == text
