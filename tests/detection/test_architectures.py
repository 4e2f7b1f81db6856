"""Tests of explorer.detection.architectures: the device, building the three architectures without a download,
their parameter shapes, the demo model's names and metadata, what a loaded model costs."""

from __future__ import annotations

import pytest
import torch

from explorer.detection import architectures
from explorer.detection.architectures import DEMO, V1, V2
from explorer.detection.demo_model import DEMO_NUM_CLASSES

CPU = torch.device("cpu")


def test_device_selection_and_names():
    assert architectures.select_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert architectures.select_device(None).type == expected
    assert architectures.device_name(CPU).startswith("CPU")
    with pytest.raises(ValueError, match="'auto', 'cuda' or 'cpu'"):
        architectures.select_device("tpu")


def test_build_model_never_downloads_and_rejects_unknown_arch():
    model = architectures.build_model(DEMO, 5)
    assert model.head.classification_head.num_classes == 5
    with pytest.raises(ValueError, match="unknown architecture 'yolo'"):
        architectures.build_model("yolo", 3)


@pytest.mark.parametrize("arch", [DEMO, V1, V2])
def test_architecture_shapes_distinguish_the_three_models(arch):
    shapes = architectures.architecture_shapes(arch)
    others = [architectures.architecture_shapes(a) for a in architectures.ARCHITECTURES if a != arch]
    assert all(shapes != o for o in others)
    assert "head.classification_head.cls_logits.weight" in shapes


def test_demo_model_loads_with_shape_names(demo):
    assert demo.arch == DEMO and demo.source == "demo"
    assert demo.num_classes == DEMO_NUM_CLASSES
    assert demo.class_names[1] == "circle" and demo.label_name(99) == "class 99"
    assert not demo.model.training
    assert architectures.DEMO_WEIGHTS.stat().st_size < 16 * 2**20
    meta = architectures.demo_metadata()
    assert meta["heldout_metrics"]["AP50"] >= 0.8


def test_model_nbytes_counts_parameters_and_buffers(demo):
    assert architectures.model_nbytes(torch.nn.Linear(3, 2)) == 32
    bn = torch.nn.BatchNorm2d(4)  # weight, bias, running mean and var (float32) and an int64 counter
    assert architectures.model_nbytes(bn) == 4 * 4 * 4 + 8
    expected = sum(v.numel() * v.element_size() for v in demo.model.state_dict().values())
    assert architectures.model_nbytes(demo) == architectures.model_nbytes(demo.model) == expected
    assert 20e6 < expected < 40e6  # ~6.4 million float32 values


def test_docstring_examples_architectures():
    import doctest

    assert doctest.testmod(architectures).failed == 0
