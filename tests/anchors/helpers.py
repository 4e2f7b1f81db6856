"""Shared test data for the anchor tests: random GT boxes inside an image."""

from __future__ import annotations

import numpy as np


def random_boxes(rng: np.random.Generator, m: int, h: int, w: int) -> np.ndarray:
    """(m, 4) float32 xyxy boxes of log-uniform size and aspect, clipped to an h x w image (some may be empty)."""
    s = np.exp(rng.uniform(np.log(4), np.log(0.8 * min(h, w)), m))
    ar = np.exp(rng.uniform(-0.8, 0.8, m))
    bw, bh = s / np.sqrt(ar), s * np.sqrt(ar)
    cx, cy = rng.uniform(0, w, m), rng.uniform(0, h, m)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes.clip(0, [w, h, w, h]).astype(np.float32)
