"""Shared fixtures of the detection tests: the demo model on the CPU, a held-out sample scene and its inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.detection.architectures import DEMO_WEIGHTS, LoadedModel
from explorer.detection.inference import InferenceResult, run_inference
from explorer.detection.loading import load_demo_model
from explorer.detection.view import Scene, sample_scene


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_demo_model(torch.device("cpu"))


@pytest.fixture(scope="module")
def scene() -> Scene:
    return sample_scene(0)


@pytest.fixture(scope="module")
def small_image(scene: Scene) -> np.ndarray:
    """A 120x160 crop: the demo model resizes it to 480x640, the size it was trained at."""
    return np.ascontiguousarray(scene.image[::4, ::4])


@pytest.fixture(scope="module")
def result(demo: LoadedModel, scene: Scene) -> InferenceResult:
    return run_inference(demo, scene.image)


@pytest.fixture(scope="module")
def demo_state_bytes() -> bytes:
    return DEMO_WEIGHTS.read_bytes()
