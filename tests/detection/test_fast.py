"""Tests of explorer.detection.fast (the benchmarked GPU path) on the CPU: the same detections as torchvision's
forward, BatchNorm folding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from explorer.detection.fast import FastRetinaNet, fold_batchnorm, match_detections_strict
from explorer.detection.inference import image_to_tensor

CPU = torch.device("cpu")


def test_fast_path_on_cpu_matches_torchvision(demo, scene):
    model = copy.deepcopy(demo.model)
    fast = FastRetinaNet(copy.deepcopy(model), CPU)
    assert fast.folded_batchnorms == 12
    x = image_to_tensor(scene.image)
    with torch.inference_mode():
        ref = model([x])[0]
    out = fast(x)
    assert match_detections_strict(ref, out) == (len(ref["boxes"]), len(ref["boxes"]))
    np.testing.assert_allclose(out["boxes"].numpy(), ref["boxes"].numpy(), atol=1e-3)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        fast(x[0])


def test_fold_batchnorm_keeps_outputs():
    from torchvision.models import resnet18

    net = resnet18(weights=None).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.rand(1, 3, 64, 64)
        ref = net(x)
        assert fold_batchnorm(net) == 20
        torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_path_on_cuda_gives_torchvision_eagers_top_100(demo):
    # What the fast path guarantees (and all it does: detections, not the dense outputs the scan and Live detections
    # need): each of eager float32's top-100 boxes matched, same label, IoU >= 0.95, score within 0.02.
    from explorer.detection.view import sample_scene

    cuda = torch.device("cuda")
    model = copy.deepcopy(demo.model).to(cuda)
    fast = FastRetinaNet(copy.deepcopy(demo.model), cuda)
    for index in range(4):
        x = image_to_tensor(sample_scene(index).image).to(cuda)
        with torch.inference_mode():
            ref = model([x])[0]
        matched, compared = match_detections_strict(ref, fast(x), top=100)
        assert compared > 0 and matched == compared, f"scene {index}: {matched}/{compared}"
