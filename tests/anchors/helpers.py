"""Shared test data for the anchor tests: random GT boxes inside an image, the assigner goldens."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


def random_boxes(rng: np.random.Generator, m: int, h: int, w: int) -> np.ndarray:
    """(m, 4) float32 xyxy boxes of log-uniform size and aspect, clipped to an h x w image (some may be empty)."""
    s = np.exp(rng.uniform(np.log(4), np.log(0.8 * min(h, w)), m))
    ar = np.exp(rng.uniform(-0.8, 0.8, m))
    bw, bh = s / np.sqrt(ar), s * np.sqrt(ar)
    cx, cy = rng.uniform(0, w, m), rng.uniform(0, h, m)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes.clip(0, [w, h, w, h]).astype(np.float32)


GOLDENS = Path(__file__).parent / "goldens" / "assigners.npz"


@lru_cache(maxsize=1)
def assigner_goldens() -> dict[str, np.ndarray]:
    """The reference outputs of ``bench/goldens/make_assigner_goldens.py`` (mmdet 3.3.0, Ultralytics 8.4.190)."""
    with np.load(GOLDENS) as z:
        return {key: z[key] for key in z.files}


def golden_cases() -> list[str]:
    return [str(c) for c in assigner_goldens()["meta__cases"]]


def golden_inputs(case: str) -> dict[str, np.ndarray]:
    """One case's inputs: anchors, levels, strides, model_strides, gt, gt_labels, scores, decoded, image_hw."""
    prefix = f"{case}__in__"
    return {k[len(prefix) :]: v for k, v in assigner_goldens().items() if k.startswith(prefix)}


def golden_outputs(case: str, method: str) -> dict[str, np.ndarray]:
    prefix = f"{case}__{method}__"
    return {k[len(prefix) :]: v for k, v in assigner_goldens().items() if k.startswith(prefix)}


def prediction_args(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(anchors, gt, gt_labels, scores, decoded) of a golden case, the assigners' positional arguments."""
    return inputs["anchors"], inputs["gt"], inputs["gt_labels"], inputs["scores"], inputs["decoded"]
