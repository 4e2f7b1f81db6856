"""Drawing boxes, anchors and density maps on images with OpenCV. Every function returns a new array.

Images are (H, W, 3) uint8 RGB; colours are RGB tuples.

Example:
    >>> img = np.zeros((20, 30, 3), np.uint8)
    >>> out = draw_boxes(img, np.array([[2, 2, 20, 15]]), colors=(255, 0, 0), thickness=1)
    >>> out[2, 10].tolist(), img[2, 10].tolist()
    ([255, 0, 0], [0, 0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Color = tuple[int, int, int]

#: One colour per pyramid level P3..P7 (colour-blind friendly, Okabe-Ito).
LEVEL_COLORS: tuple[Color, ...] = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (213, 94, 0),
    (86, 180, 233),
    (240, 228, 66),
)


UNMATCHED_COLOR: Color = (230, 0, 0)
#: Crowd (ignore) regions: hatched light grey.
CROWD_COLOR: Color = (215, 215, 215)


def palette(n: int) -> list[Color]:
    """``n`` well-separated RGB colours (golden-angle hues, fixed order).

    Example:
        >>> palette(2)
        [(255, 64, 64), (64, 255, 115)]
    """
    out = []
    for i in range(n):
        hue = (i * 137.508) % 360.0
        hsv = np.array([[[hue / 2.0, 191, 255]]], np.uint8)  # OpenCV hue is 0..180
        r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
        out.append((int(r), int(g), int(b)))
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) or (H, W), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    return np.ascontiguousarray(img).copy()


def _colors_for(n: int, colors: Color | Sequence[Color] | None, default: Color) -> list[Color]:
    if colors is None:
        return [default] * n
    if len(colors) == 3 and all(np.isscalar(c) for c in colors):
        return [tuple(int(c) for c in colors)] * n  # type: ignore[list-item]
    cols = [tuple(int(v) for v in c) for c in colors]  # type: ignore[union-attr]
    if len(cols) != n:
        raise ValueError(f"got {len(cols)} colours for {n} boxes")
    return cols  # type: ignore[return-value]


def _font_scale(image: np.ndarray) -> float:
    return float(np.clip(min(image.shape[:2]) / 900.0, 0.35, 1.2))


def draw_boxes(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    colors: Color | Sequence[Color] | None = None,
    thickness: int = 2,
) -> np.ndarray:
    """Draw boxes (and optional text labels on a filled tab) on a copy of the image.

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) grayscale).
        boxes_xyxy: (M, 4) pixel coordinates; boxes may extend past the image.
        labels: one string per box (empty strings draw no tab).
        colors: one RGB colour for all boxes, or one per box (default green).
        thickness: line thickness in pixels.

    Returns:
        A new (H, W, 3) uint8 array.
    """
    out = _check_image(image)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"got {len(labels)} labels for {len(boxes)} boxes")
    cols = _colors_for(len(boxes), colors, (0, 255, 0))
    scale = _font_scale(out)
    for k, (box, col) in enumerate(zip(boxes, cols, strict=True)):
        if not np.isfinite(box).all():
            continue
        x1, y1, x2, y2 = np.round(box).astype(np.int64).clip(-(2**30), 2**30).tolist()
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), col, thickness)
        text = labels[k] if labels is not None else ""
        if text:
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
            tx = int(np.clip(x1, 0, max(0, out.shape[1] - tw - 2)))
            cv2.rectangle(out, (tx, ty - th - base), (tx + tw + 2, ty + 1), col, -1)
            lum = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2]
            fg = (0, 0, 0) if lum > 140 else (255, 255, 255)
            cv2.putText(out, text, (tx + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, fg, 1, cv2.LINE_AA)
    return out


def draw_anchor_boxes(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    colors: Color | Sequence[Color],
    *,
    thickness: int = 1,
    alpha: float = 0.75,
) -> np.ndarray:
    """Draw many thin boxes blended over the image (thousands of anchors stay readable).

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes_xyxy: (K, 4) boxes.
        colors: one colour or one per box.
        thickness: line thickness.
        alpha: opacity of the lines (0..1).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _check_image(image)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return base
    cols = _colors_for(len(boxes), colors, (0, 255, 0))
    layer = base.copy()
    mask = np.zeros(base.shape[:2], np.uint8)
    ib = np.round(boxes).astype(np.int64).clip(-(2**30), 2**30)
    for (x1, y1, x2, y2), col in zip(ib.tolist(), cols, strict=True):
        cv2.rectangle(layer, (x1, y1), (x2 - 1, y2 - 1), col, thickness)
        cv2.rectangle(mask, (x1, y1), (x2 - 1, y2 - 1), 255, thickness)
    blend = cv2.addWeighted(layer, alpha, base, 1.0 - alpha, 0.0)
    np.copyto(base, blend, where=(mask > 0)[:, :, None])
    return base


def density_map(
    points_xy: np.ndarray, height: int, width: int, *, cell: int = 8, weights: np.ndarray | None = None
) -> np.ndarray:
    """Smoothed 2-D histogram of points: (H, W) float32, the count per ``cell x cell`` pixels, blurred.

    Example:
        >>> d = density_map(np.array([[4.0, 4.0], [5.0, 5.0]]), 16, 16, cell=8)
        >>> d.shape, float(d.max()) > 0
        ((16, 16), True)
    """
    if cell < 1:
        raise ValueError(f"cell must be >= 1, got {cell}")
    gh, gw = -(-height // cell), -(-width // cell)
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    hist = np.zeros((gh, gw), np.float32)
    if len(pts):
        j = np.clip((pts[:, 0] // cell).astype(np.int64), 0, gw - 1)
        i = np.clip((pts[:, 1] // cell).astype(np.int64), 0, gh - 1)
        w = None if weights is None else np.asarray(weights, dtype=np.float32)
        np.add.at(hist, (i, j), 1.0 if w is None else w)
        hist = cv2.GaussianBlur(hist, (0, 0), sigmaX=1.0)
    return cv2.resize(hist, (width, height), interpolation=cv2.INTER_LINEAR)


def overlay_density(
    image: np.ndarray, density: np.ndarray, *, alpha: float = 0.55, colormap: int = cv2.COLORMAP_INFERNO
) -> np.ndarray:
    """Blend a density map (H, W) over the image with a colormap; zero-density pixels stay untouched."""
    base = _check_image(image)
    d = np.asarray(density, dtype=np.float32)
    if d.shape != base.shape[:2]:
        raise ValueError(f"density shape {d.shape} does not match image {base.shape[:2]}")
    peak = float(d.max()) if d.size else 0.0
    if peak <= 0:
        return base
    norm = np.sqrt(d * np.float32(1.0 / peak))  # sqrt: keep sparse regions visible next to dense ones
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), colormap)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    # Integer blend: out = base + (heat - base) * a, with a = alpha * min(1, 3 * norm) in 1/256 steps.
    a = np.minimum(norm * np.float32(3.0), np.float32(1.0)) * np.float32(alpha * 256.0)
    a16 = cv2.merge([a.astype(np.uint16)] * 3)
    out = base.astype(np.uint16) * (256 - a16) + heat.astype(np.uint16) * a16
    return (out >> 8).astype(np.uint8)


def highlight_boxes(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    color: Color = UNMATCHED_COLOR,
    thickness: int = 4,
    dim: float = 0.0,
) -> np.ndarray:
    """Emphasise boxes: thick outline with a white halo, optionally dimming the rest of the image.

    Args:
        dim: 0..1, how much to darken pixels outside every highlighted box.
    """
    base = _check_image(image)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if dim > 0 and len(boxes):
        inside = np.zeros(base.shape[:2], bool)
        h, w = base.shape[:2]
        for x1, y1, x2, y2 in np.round(boxes).astype(np.int64).tolist():
            inside[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)] = True
        base[~inside] = (base[~inside] * (1.0 - dim)).astype(np.uint8)
    halo = draw_boxes(base, boxes, colors=(255, 255, 255), thickness=thickness + 2)
    return draw_boxes(halo, boxes, labels=labels, colors=color, thickness=thickness)


def draw_ignore_regions(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    *,
    label: str = "crowd",
    color: Color = CROWD_COLOR,
    spacing: int = 10,
) -> np.ndarray:
    """Ignore regions (COCO crowd boxes): diagonal hatching clipped to each box, a thin outline and a tab.

    Hatching keeps them apart from objects at a glance: a crowd box is not an object to detect, and the labeling
    leaves it out of matching.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes_xyxy: (C, 4) pixel coordinates.
        label: the tab text of each region ("" for none).
        color: hatch and outline colour.
        spacing: pixels between hatch lines.
    """
    out = _check_image(image)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    h, w = out.shape[:2]
    for box in boxes:
        if not np.isfinite(box).all():
            continue
        x1, y1, x2, y2 = np.round(box).astype(np.int64).clip(-(2**30), 2**30).tolist()
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        patch = np.ascontiguousarray(out[cy1:cy2, cx1:cx2])
        ph, pw = patch.shape[:2]
        for c in range(-ph, pw, max(2, spacing)):
            cv2.line(patch, (c, ph), (c + ph, 0), color, 1, cv2.LINE_AA)
        out[cy1:cy2, cx1:cx2] = patch
    labels = [label] * len(boxes) if label else None
    return draw_boxes(out, boxes, labels=labels, colors=color, thickness=1)


def draw_marker(image: np.ndarray, x: float, y: float, *, color: Color = (255, 255, 255), size: int = 12) -> np.ndarray:
    """A cross marker with a dark outline at (x, y)."""
    out = _check_image(image)
    p = (int(np.rint(x)), int(np.rint(y)))
    cv2.drawMarker(out, p, (0, 0, 0), cv2.MARKER_CROSS, size + 4, 4)
    cv2.drawMarker(out, p, color, cv2.MARKER_CROSS, size, 2)
    return out


def pad_canvas(image: np.ndarray, height: int, width: int, *, fill: Color = (40, 40, 40)) -> np.ndarray:
    """Place the image at the top-left of a ``height x width`` canvas (the padded network input)."""
    img = _check_image(image)
    if height < img.shape[0] or width < img.shape[1]:
        raise ValueError(f"canvas {height}x{width} is smaller than the image {img.shape[0]}x{img.shape[1]}")
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = fill
    canvas[: img.shape[0], : img.shape[1]] = img
    return canvas


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to (height, width) with bilinear interpolation (area when shrinking), as a new array."""
    img = _check_image(image)
    if (height, width) == img.shape[:2]:
        return img
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {height}x{width}")
    shrink = height < img.shape[0] and width < img.shape[1]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
