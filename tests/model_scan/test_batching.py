"""The model scan's batched forward passes: grouping by padded input size with bounded buffers, rows equal to those of
batch size 1, and CUDA out-of-memory halving the batch down to a CPU copy (simulated: no GPU is needed)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.image_stores import FolderImages, ZipImages
from explorer.detection import inference
from explorer.detection.inference import CPU_FALLBACK_NOTICE, BatchInference
from explorer.detection.loading import load_demo_model
from explorer.model_scan.run import ImageResult, ModelScan, ModelScanConfig, Pending, grouped, in_order
from tests.helpers import zip_bytes

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def demo():
    return load_demo_model(CPU)


def assert_same_scan(a: ModelScan, b: ModelScan) -> None:
    """Rows, detections and problems equal: floats within 1e-5 relative, everything else exactly; the focal loss the
    loss bins give, per group, within 1e-5 at several gammas (not bin by bin: an element at one of the 4,000 bin
    edges may cross it when a batched convolution sums in another order); the score-IoU histograms equal."""
    assert list(a.images.columns) == list(b.images.columns)
    pd.testing.assert_frame_equal(a.images, b.images, rtol=1e-5, atol=1e-7)
    pd.testing.assert_frame_equal(a.detections, b.detections, rtol=1e-5, atol=1e-4)
    pd.testing.assert_frame_equal(a.problems, b.problems, rtol=1e-5, atol=1e-5)
    for gamma in (0.0, 2.0, 5.0):
        got, want = a.bins.focal(alpha=0.25, gamma=gamma)[0], b.bins.focal(alpha=0.25, gamma=gamma)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert a.histograms.keys() == b.histograms.keys()
    for key, counts in a.histograms.items():
        np.testing.assert_array_equal(counts, b.histograms[key])


class _Run:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size


def _pending(keys: list[str | None]) -> list[Pending]:
    image = np.zeros((2, 2, 3), np.uint8)
    return [Pending(i, i, {}, None if k is None else image, k) for i, k in enumerate(keys)]


def test_grouped_makes_batches_of_one_size_and_holds_few_images():
    # A B A B A A: batches of 2 per size; an unreadable image (None) goes at once; the rest at the end.
    groups = grouped(iter(_pending(["A", "B", None, "A", "B", "A"])), _Run(2), max_waiting=4)
    assert [[p.position for p in g] for g in groups] == [[2], [0, 3], [1, 4], [5]]
    # Too many waiting (3 sizes, no full batch): the group of the image waiting longest goes first.
    groups = grouped(iter(_pending(["A", "B", "C", "B", "C"])), _Run(3), max_waiting=3)
    assert [[p.position for p in g] for g in groups] == [[0], [1, 3], [2, 4]]
    assert list(grouped(iter([]), _Run(2), max_waiting=4)) == []


def test_in_order_puts_results_back_in_scan_order():
    rows = [ImageResult({"n": i}) for i in range(4)]
    assert [r.row["n"] for r in in_order(iter([(1, rows[1]), (0, rows[0]), (3, rows[3]), (2, rows[2])]))] == [
        0, 1, 2, 3,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="missing before position 1"):
        list(in_order(iter([(1, rows[1])])))


def test_batch_size_is_validated_and_defaults_by_device():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ModelScanConfig(batch_size=0)
    assert ModelScanConfig().batch_size_on(CPU) == 1
    assert ModelScanConfig().batch_size_on(torch.device("cuda")) == 8
    assert ModelScanConfig(batch_size=3).batch_size_on(torch.device("cuda")) == 3
    with pytest.raises(ValueError, match="one padded input size"):
        inference._forward_dense_batch(load_demo_model(CPU).model, _mixed_arrays()[1:3], CPU)


@pytest.mark.slow  # two scans of 4 images
def test_batched_rows_equal_batch_size_1_on_the_sample(demo):
    path = synthetic.sample_dataset()
    ds, store = load_coco(path), FolderImages(path.parent / "images")
    one = ModelScan.run(ds, store, demo, ModelScanConfig(limit=4, batch_size=1))
    four = ModelScan.run(ds, store, demo, ModelScanConfig(limit=4, batch_size=4))
    assert one.images["error"].eq("").all() and len(one.detections) > 0
    assert_same_scan(one, four)


def _mixed_arrays() -> list[np.ndarray]:
    """Four sample scenes at three sizes: 640x480 and 320x240 (both 480x640 at the input) and 500x480 twice (padded
    to 480x512)."""
    _, arrays = synthetic.make_dataset(4, seed=5)
    small = np.asarray(Image.fromarray(arrays[1]).resize((320, 240)))
    return [arrays[0], small, arrays[2][:, :500].copy(), arrays[3][:, :500].copy()]


def _mixed_dataset():
    coco, _ = synthetic.make_dataset(4, seed=5)
    members = {}
    for im, arr in zip(coco["images"], _mixed_arrays(), strict=True):
        im["height"], im["width"] = arr.shape[:2]
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        members[im["file_name"]] = buf.getvalue()
    coco["annotations"] = [
        a for a in coco["annotations"] if a["bbox"][0] + a["bbox"][2] <= 300 and a["bbox"][1] + a["bbox"][3] <= 240
    ]
    return load_coco(coco), ZipImages(zip_bytes(members))


@pytest.mark.slow  # two scans of 4 images
def test_images_of_different_sizes_are_batched_by_padded_input_size(demo, monkeypatch):
    ds, store = _mixed_dataset()
    one = ModelScan.run(ds, store, demo, ModelScanConfig(batch_size=1))
    passes: list[list[tuple[int, int]]] = []
    real = inference._forward_dense_batch

    def spy(model, images, device):
        passes.append([im.shape[:2] for im in images])
        return real(model, images, device)

    monkeypatch.setattr(inference, "_forward_dense_batch", spy)
    two = ModelScan.run(ds, store, demo, ModelScanConfig(batch_size=2))
    assert passes == [[(480, 640), (240, 320)], [(480, 500), (480, 500)]]
    assert one.images["boxes"].sum() > 0
    assert_same_scan(one, two)


@pytest.mark.slow  # eight forward passes and a CPU copy of the model
def test_cuda_out_of_memory_halves_the_batch_then_runs_one_image_on_a_cpu_copy(demo, monkeypatch):
    # The model labelled as on a GPU (its weights stay on the CPU): batches of more than one image do not fit, nor
    # does the third image alone.
    first, second = _mixed_arrays()[:2]
    arrays = [first, second, first.copy(), second.copy()]
    reference = [r.dense.cls_logits for r in BatchInference(demo, 1)(arrays)]
    shared = dataclasses.replace(demo, device=torch.device("cuda"), notices=[])
    real, calls = inference._forward_dense_batch, []

    def forward(model, images, device):
        calls.append((len(images), device.type))
        if device.type == "cuda" and (len(images) > 1 or images[0] is arrays[2]):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, images, CPU)

    monkeypatch.setattr(inference, "_forward_dense_batch", forward)
    monkeypatch.setattr(inference, "device_name", lambda device: device.type)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    notices: list[str] = []
    run = BatchInference(shared, 4, notice=notices.append)
    results = run(arrays)
    assert calls == [(4, "cuda"), (2, "cuda"), (1, "cuda"), (1, "cuda"), (1, "cuda"), (1, "cpu"), (1, "cuda")]
    assert notices == [
        "CUDA ran out of memory on a batch of 4 images: continuing with batches of 2",
        "CUDA ran out of memory on a batch of 2 images: continuing with batches of 1",
        CPU_FALLBACK_NOTICE,
    ]
    assert run.batch_size == 1 and [r.device for r in results] == ["cuda", "cuda", "cpu", "cuda"]
    assert results[2].notices == [CPU_FALLBACK_NOTICE] and shared.model is demo.model
    for got, want in zip(results, reference, strict=True):
        torch.testing.assert_close(got.dense.cls_logits, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batched_rows_equal_batch_size_1_on_cuda(monkeypatch):
    # TF32 off: with it cuDNN may pick other algorithms (other roundings, ~1e-3) for a batch of 8 than for one image.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    path = synthetic.sample_dataset()
    ds, store, gpu = load_coco(path), FolderImages(path.parent / "images"), load_demo_model(torch.device("cuda"))
    one = ModelScan.run(ds, store, gpu, ModelScanConfig(limit=12, batch_size=1))
    eight = ModelScan.run(ds, store, gpu, ModelScanConfig(limit=12))  # the CUDA default, 8
    assert_same_scan(one, eight)
