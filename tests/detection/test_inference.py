"""Tests of explorer.detection.inference: input checks, the model's lock, concurrent requests, the CPU-copy fallback
on CUDA out-of-memory."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from explorer.detection import inference
from explorer.detection.inference import run_inference

CPU = torch.device("cpu")


def test_score_threshold_is_validated(demo, small_image):
    with pytest.raises(ValueError, match="score_thresh"):
        run_inference(demo, small_image, score_thresh=1.5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        run_inference(demo, small_image.astype(np.float32))


def test_inference_holds_the_models_lock(demo, small_image, monkeypatch):
    seen = []
    forward = demo.model.backbone.forward

    def spy(x):
        seen.append(demo.lock.locked())
        return forward(x)

    monkeypatch.setattr(demo.model.backbone, "forward", spy)
    run_inference(demo, small_image)
    assert seen == [True]


def test_concurrent_inference_gives_identical_results(demo, small_image):
    outputs: list = [None] * 3

    def work(i: int) -> None:
        outputs[i] = run_inference(demo, small_image).detections

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outputs[1:]:
        np.testing.assert_array_equal(out.boxes, outputs[0].boxes)


def test_cuda_out_of_memory_runs_the_image_on_a_cpu_copy_and_leaves_the_shared_model(demo, small_image, monkeypatch):
    # The shared model as the server holds it on a GPU (here its weights stay on the CPU: only the label matters).
    reference = run_inference(demo, small_image).detections
    shared = dataclasses.replace(demo, device=torch.device("cuda"), notices=[])
    before = {k: (v.data_ptr(), v.clone()) for k, v in shared.model.state_dict().items()}
    real = inference._forward_dense
    calls = []

    def out_of_memory_on_the_gpu(model, image, device):
        calls.append((model, device))
        if device.type == "cuda":
            assert shared.lock.locked()
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        assert not shared.lock.locked()  # the private CPU copy runs without holding other requests up
        return real(model, image, device)

    monkeypatch.setattr(inference, "_forward_dense", out_of_memory_on_the_gpu)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out = run_inference(shared, small_image)

    assert [d.type for _, d in calls] == ["cuda", "cpu"]
    assert calls[0][0] is shared.model and calls[1][0] is not shared.model
    assert out.device.startswith("CPU") and "ran on a CPU copy" in out.notices[0]
    assert shared.device.type == "cuda" and shared.notices == [] and shared.model is demo.model
    after = shared.model.state_dict()
    assert all(after[k].data_ptr() == ptr and torch.equal(after[k], value) for k, (ptr, value) in before.items())
    np.testing.assert_array_equal(out.detections.boxes, reference.boxes)


def test_out_of_memory_on_the_cpu_is_not_retried(demo, small_image, monkeypatch):
    def out_of_memory(model, image, device):
        raise torch.OutOfMemoryError("out of memory (simulated)")

    monkeypatch.setattr(inference, "_forward_dense", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        run_inference(demo, small_image)


def test_cpu_copy_is_an_independent_equal_model(demo):
    clone = inference.cpu_copy(demo.model)
    assert clone is not demo.model and not clone.training
    ours, theirs = clone.state_dict(), demo.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value) and ours[key].data_ptr() != value.data_ptr()
        assert ours[key].device == CPU
    assert not any(p.requires_grad for p in clone.parameters())


def test_elongated_images_are_refused_before_the_transform_crashes(demo):
    assert inference.check_input_size(480, 640, 480, 640) == (480, 640)
    assert inference.check_input_size(20, 20000, 800, 1333) == (1, 1333)
    with pytest.raises(ValueError, match=r"too elongated: 20000x20 px would be resized to 640x0 px"):
        inference.check_input_size(20, 20000, 480, 640)
    with pytest.raises(ValueError, match="too elongated"):
        inference.run_inference(demo, np.zeros((20, 20000, 3), np.uint8))
