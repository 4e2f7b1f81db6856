"""The scan driver: chunks, progress, devices, configuration errors, hostile image sizes, docstring examples."""

from __future__ import annotations

import pytest

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from tests.dataset.scan_cases import coco_ann, coco_image


def test_chunking_does_not_change_results():
    coco, _ = synthetic.make_dataset(9, seed=4)
    ds = load_coco(coco)
    a = scan_dataset(ds, device="cpu")
    b = scan_dataset(ds, device="cpu", chunk_images=2)
    assert a.images.equals(b.images)
    assert a.boxes.equals(b.boxes)


def test_progress_is_reported():
    coco, _ = synthetic.make_dataset(5, seed=1)
    calls = []
    scan_dataset(load_coco(coco), device="cpu", chunk_images=2, progress=lambda done, total: calls.append(done))
    assert calls == [2, 4, 5]


def test_bad_configuration():
    with pytest.raises(ValueError, match="neg_thresh"):
        ScanConfig(pos_thresh=0.3, neg_thresh=0.4)
    with pytest.raises(ValueError, match="neg_thresh"):
        ScanConfig(neg_thresh=0.0)
    with pytest.raises(ValueError, match="device"):
        scan_dataset(load_coco({"images": []}), device="tpu")


def test_docstring_examples():
    import doctest

    from explorer.dataset import coco, scan, scan_config, scan_cpu, scan_geometry, scan_reference, scan_result

    for module in (coco, scan, scan_cpu, scan_config, scan_geometry, scan_reference, scan_result):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_auto_device_runs_the_cpu_kernel_even_with_cuda(monkeypatch):
    import explorer.dataset.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: True)
    coco, _ = synthetic.make_dataset(6, seed=2)
    assert scan_dataset(load_coco(coco), device="auto").path == "cpu"


def test_cuda_device_runs_the_torch_path(monkeypatch):
    import explorer.dataset.scan as scan_mod
    import explorer.dataset.scan_torch as scan_torch_mod

    real = scan_torch_mod.scan_torch
    devices = []

    def fake_cuda_scan(*args, device, **kwargs):  # runs the CUDA path's code on the CPU
        devices.append(device)
        return real(*args, device="cpu", **kwargs)

    monkeypatch.setattr(scan_torch_mod, "scan_torch", fake_cuda_scan)
    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: True)
    coco, _ = synthetic.make_dataset(6, seed=2)
    ds = load_coco(coco)
    on_cuda = scan_dataset(ds, device="cuda")
    assert on_cuda.path.startswith("torch-cuda") and devices == ["cuda"]
    assert on_cuda.images.equals(scan_dataset(ds, device="cpu").images)


def test_an_image_too_elongated_for_the_input_size_is_named():
    coco = {
        "images": [coco_image(1), {"id": 2, "width": 100000, "height": 3, "file_name": "strip.jpg"}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [coco_ann(1, 1, [10, 10, 50, 50]), coco_ann(2, 2, [0, 0, 10, 3])],
    }
    with pytest.raises(ValueError, match=r"image id 2 \(strip.jpg\): a 100000x3 px image resizes to 1333x0 px"):
        scan_dataset(load_coco(coco), device="cpu")


def test_an_absurdly_large_image_is_a_problem_row_not_an_aborted_scan():
    coco = {
        "images": [coco_image(1), coco_image(2, width=10**9), coco_image(3, width=4_294_967_936)],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [coco_ann(1, 1, [10, 10, 50, 50]), coco_ann(2, 2, [0, 0, 10, 3]), coco_ann(3, 3, [0, 0, 10, 3])],
    }
    ds = load_coco(coco)
    result = scan_dataset(ds, device="cpu")
    assert result.images["image_id"].tolist() == [1] and result.images["input_width"].tolist() == [1066]
    assert ds.problems[ds.problems["kind"] == "image_size"]["image_id"].tolist() == [2, 3]


def test_cuda_without_a_gpu_is_a_value_error(monkeypatch):
    import explorer.dataset.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_cuda_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        scan_dataset(load_coco({"images": [coco_image(1)]}), device="cuda")


def test_the_cpu_path_uses_the_available_cpus_up_to_a_cap(monkeypatch):
    import explorer.dataset.scan as scan_mod

    monkeypatch.setattr(scan_mod, "_available_cpus", lambda: 16)
    assert scan_mod._workers(None, chunks=100) == scan_mod.MAX_THREADS
    assert scan_mod._workers(None, chunks=3) == 3  # no idle threads
    monkeypatch.setattr(scan_mod, "_available_cpus", lambda: 2)
    assert scan_mod._workers(None, chunks=100) == 2
    assert scan_mod._workers(5, chunks=100) == 5  # asked for: as asked
    with pytest.raises(ValueError, match="workers must be >= 1"):
        scan_mod._workers(0, chunks=100)
