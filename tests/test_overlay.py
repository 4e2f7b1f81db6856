"""Tests for explorer.overlay: new arrays, colours where expected, input validation."""

from __future__ import annotations

import numpy as np
import pytest

from explorer import overlay


def _img(h: int = 40, w: int = 60) -> np.ndarray:
    return np.full((h, w, 3), 50, np.uint8)


def test_draw_boxes_returns_new_array_with_colour() -> None:
    img = _img()
    out = overlay.draw_boxes(img, np.array([[5, 5, 30, 20]]), colors=[(255, 0, 0)], thickness=1)
    assert out is not img and (img == 50).all()
    assert out[5, 15].tolist() == [255, 0, 0] and out[10, 15].tolist() == [50, 50, 50]


@pytest.mark.parametrize("boxes", [np.zeros((0, 4)), np.array([[-100, -100, 500, 500]]), np.array([[0, 0, np.inf, 3]])])
def test_draw_boxes_edge_cases(boxes: np.ndarray) -> None:
    out = overlay.draw_boxes(_img(), boxes)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8


def test_draw_boxes_labels_and_validation() -> None:
    out = overlay.draw_boxes(_img(100, 200), np.array([[20, 30, 120, 90]]), labels=["0 person"], colors=(0, 0, 255))
    assert (out[10:30, 20:60] != 50).any()  # the label tab above the box
    with pytest.raises(ValueError, match="labels"):
        overlay.draw_boxes(_img(), np.array([[0, 0, 5, 5]]), labels=["a", "b"])
    with pytest.raises(ValueError, match="colours"):
        overlay.draw_boxes(_img(), np.array([[0, 0, 5, 5]] * 2), colors=[(1, 2, 3)] * 3)
    with pytest.raises(ValueError, match="uint8"):
        overlay.draw_boxes(np.zeros((4, 4, 3), np.float32), np.zeros((0, 4)))
    gray = overlay.draw_boxes(np.zeros((10, 10), np.uint8), np.zeros((0, 4)))
    assert gray.shape == (10, 10, 3)


def test_anchor_boxes_blend() -> None:
    out = overlay.draw_anchor_boxes(_img(), np.array([[5, 5, 30, 20]]), (250, 50, 50), alpha=0.5)
    assert out[5, 15].tolist() == [150, 50, 50]
    assert out[10, 15].tolist() == [50, 50, 50]
    with pytest.raises(ValueError, match="alpha"):
        overlay.draw_anchor_boxes(_img(), np.zeros((1, 4)), (0, 0, 0), alpha=2)


def test_density_map_and_overlay() -> None:
    d = overlay.density_map(np.array([[10.0, 10.0]] * 5), 40, 60, cell=8)
    assert d.shape == (40, 60) and d[10, 10] > d[35, 55] >= 0
    out = overlay.overlay_density(_img(), d)
    assert (out[10, 10] != 50).any() and out[39, 59].tolist() == [50, 50, 50]
    assert (overlay.overlay_density(_img(), np.zeros((40, 60))) == 50).all()
    with pytest.raises(ValueError, match="does not match"):
        overlay.overlay_density(_img(), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="cell"):
        overlay.density_map(np.zeros((0, 2)), 4, 4, cell=0)


def test_highlight_marker_canvas_resize() -> None:
    out = overlay.highlight_boxes(_img(), np.array([[10, 10, 30, 30]]), dim=0.5)
    assert out[0, 0].tolist() == [25, 25, 25] and out[10, 20].tolist() == list(overlay.UNMATCHED_COLOR)
    m = overlay.draw_marker(_img(), 30, 20)
    assert m[20, 30].tolist() == [255, 255, 255]
    c = overlay.pad_canvas(_img(), 64, 64)
    assert c.shape == (64, 64, 3) and c[63, 63].tolist() == [40, 40, 40] and c[0, 0].tolist() == [50, 50, 50]
    with pytest.raises(ValueError, match="smaller"):
        overlay.pad_canvas(_img(), 10, 10)
    assert overlay.resize_image(_img(), 80, 120).shape == (80, 120, 3)
    assert len(set(overlay.palette(12))) == 12
