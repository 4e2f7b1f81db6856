"""Running a model on one image (:func:`run_inference`) or on batches of images (:class:`BatchInference`).

It runs the model stage by stage under the model's lock (torchvision's ``AnchorGenerator`` caches per-size anchors on
itself during forward, so a shared model is not thread-safe), times the stages, and returns the final detections,
the candidates before NMS and the dense outputs (``explorer.detection.outputs``). A CUDA out-of-memory error runs
that one image on a CPU copy of the model (:func:`cpu_copy`) with a notice; the shared model stays on the GPU for
every other request. :class:`BatchInference` (the model scan's) runs images of one padded input size
(:func:`padded_input_hw`) several at a time, halving the batch on CUDA out-of-memory before it falls back the same way.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from explorer.boxes import resized_hw
from explorer.detection.architectures import LoadedModel, device_name
from explorer.detection.outputs import (
    DETECTIONS_PER_IMG,
    NMS_THRESH,
    SCORE_THRESH,
    TOPK_CANDIDATES,
    DenseOutputs,
    Detections,
    postprocess_dense,
)


@dataclass
class InferenceResult:
    """Output of :func:`run_inference`.

    Attributes:
        detections: final detections after NMS (at most ``detections_per_img``).
        candidates: the candidates before NMS (score > threshold, top-k per level).
        dense: the dense per-anchor outputs.
        timings_ms: ``preprocess``, ``backbone+FPN``, ``head``, ``postprocess`` and ``total`` in milliseconds.
        device: the device line it ran on.
        notices: messages for the user (CPU fallback after CUDA out-of-memory).
    """

    detections: Detections
    candidates: Detections
    dense: DenseOutputs
    timings_ms: dict[str, float]
    device: str
    notices: list[str] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_image_array(image: np.ndarray) -> np.ndarray:
    """The image as an array, or ``ValueError`` unless it is (H, W, 3) uint8 RGB of at least 2x2 pixels."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"image is too small: {arr.shape[1]}x{arr.shape[0]} pixels")
    return arr


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    arr = check_image_array(image)
    # The float32 copy is made by numpy: shared decoded images are read-only, and torch warns on those.
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).div_(255.0)


def check_input_size(height: int, width: int, min_size: float, max_size: float) -> tuple[int, int]:
    """The network input size torchvision's transform gives an image, refusing one that would shrink to nothing.

    torchvision scales by ``min(min_size / short side, max_size / long side)`` and floors the result, so a very
    elongated image (20x20000 px) would become 0 px high and crash the transform.

    Returns:
        ``(input_height, input_width)``.

    Raises:
        ValueError: a side of the resized image would be below 1 px; the message names the image size.
    """
    h, w = resized_hw(height, width, min_size, max_size)
    if h < 1 or w < 1:
        raise ValueError(
            f"image is too elongated: {width}x{height} px would be resized to {w}x{h} px at the model's input size "
            f"(at most {max_size:g} px on the long side); crop it or split it first"
        )
    return h, w


def padded_input_hw(height: int, width: int, transform: GeneralizedRCNNTransform) -> tuple[int, int]:
    """The padded network input (H, W) of an image alone: torchvision's resize (:func:`check_input_size`), then each
    side rounded up to the transform's ``size_divisible``.

    torchvision pads a batch to its largest image, which moves the anchors and the border activations: only images
    with the same padded input size give the same outputs batched as alone, so batches are grouped by this key.

    Args:
        height, width: the image's size.
        transform: the model's ``transform``.

    Example (the demo model: shorter side to 480 px, longer at most 640 px, padded to multiples of 32):
        >>> from explorer.detection.demo_model import build_demo_model
        >>> t = build_demo_model().transform
        >>> padded_input_hw(480, 640, t), padded_input_hw(240, 320, t), padded_input_hw(480, 500, t)
        ((480, 640), (480, 640), (480, 512))
    """
    h, w = check_input_size(height, width, float(transform.min_size[-1]), transform.max_size)
    d = int(transform.size_divisible)
    return -(-h // d) * d, -(-w // d) * d


@torch.inference_mode()
def _forward_dense_batch(
    model: RetinaNet, images: list[np.ndarray], device: torch.device
) -> tuple[list[DenseOutputs], dict[str, float]]:
    """One forward pass over images of one padded input size; the timings are the batch's, per image."""
    t0 = time.perf_counter()
    tensors = [image_to_tensor(image) for image in images]
    keys = {padded_input_hw(int(t.shape[1]), int(t.shape[2]), model.transform) for t in tensors}
    if len(keys) > 1:
        raise ValueError(f"a batch must hold images of one padded input size, got {sorted(keys)}")
    batch, _ = model.transform([t.to(device) for t in tensors])
    _sync(device)
    t1 = time.perf_counter()
    features = list(model.backbone(batch.tensors).values())
    _sync(device)
    t2 = time.perf_counter()
    head = model.head(features)
    anchors = model.anchor_generator(batch, features)
    _sync(device)
    t3 = time.perf_counter()
    n = len(images)
    timings = {"preprocess": (t1 - t0) * 1000 / n, "backbone+FPN": (t2 - t1) * 1000 / n, "head": (t3 - t2) * 1000 / n}
    grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
    a = model.anchor_generator.num_anchors_per_location()[0]
    levels = torch.cat([torch.full((gh * gw * a,), i, dtype=torch.int64) for i, (gh, gw) in enumerate(grid_sizes)])
    logits, deltas = head["cls_logits"].float().cpu(), head["bbox_regression"].float().cpu()
    dense = [
        DenseOutputs(
            cls_logits=logits[i],
            bbox_deltas=deltas[i],
            anchors=anchors[i].float().cpu(),
            levels=levels,
            grid_sizes=grid_sizes,
            anchors_per_location=a,
            input_size=(int(batch.image_sizes[i][0]), int(batch.image_sizes[i][1])),
            image_size=(int(image.shape[0]), int(image.shape[1])),
        )
        for i, image in enumerate(images)
    ]
    return dense, timings


def _forward_dense(model: RetinaNet, image: np.ndarray, device: torch.device) -> tuple[DenseOutputs, dict[str, float]]:
    dense, timings = _forward_dense_batch(model, [image], device)
    return dense[0], timings


def cpu_copy(model: RetinaNet) -> RetinaNet:
    """A CPU copy of a model on any device, made without a second copy on that device.

    ``copy.deepcopy(model).cpu()`` would first duplicate every weight on the GPU, which is what just ran out of memory.
    Here the module tree is copied with placeholder (meta) tensors, allocated on the CPU and filled from the original.
    """
    originals = list(itertools.chain(model.parameters(), model.buffers()))
    memo: dict[int, object] = {}
    for t in originals:
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = (
            torch.nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else meta
        )
    clone = copy.deepcopy(model, memo).to_empty(device="cpu")
    with torch.no_grad():
        for dst, src in zip(itertools.chain(clone.parameters(), clone.buffers()), originals, strict=True):
            dst.copy_(src)
    return clone


#: What a user is told when one image ran on a CPU copy after CUDA ran out of memory.
CPU_FALLBACK_NOTICE = (
    "CUDA ran out of memory: this image ran on a CPU copy of the model (slower); the model stays on the GPU for the "
    "next image."
)


def _finish(dense: DenseOutputs, timings: dict[str, float], device: torch.device, notices: list[str], **post: float):
    """Postprocess one image's dense outputs into an :class:`InferenceResult`."""
    t0 = time.perf_counter()
    detections, candidates = postprocess_dense(dense, **post)
    timings = {**timings, "postprocess": (time.perf_counter() - t0) * 1000}
    timings["total"] = sum(timings.values())
    return InferenceResult(detections, candidates, dense, timings, device_name(device), notices)


def run_inference(
    loaded: LoadedModel,
    image: np.ndarray,
    *,
    score_thresh: float = SCORE_THRESH,
    topk: int = TOPK_CANDIDATES,
    nms_thresh: float = NMS_THRESH,
    detections_per_img: int = DETECTIONS_PER_IMG,
) -> InferenceResult:
    """Run the model on one image, under its lock, stage by stage.

    Args:
        loaded: the model (shared by every session of the server).
        image: (H, W, 3) uint8 RGB.
        score_thresh, topk, nms_thresh, detections_per_img: postprocessing (torchvision's defaults).

    Returns:
        An :class:`InferenceResult`. On CUDA out-of-memory this one image runs on a CPU copy of the model
        (:func:`cpu_copy`, made under the lock and dropped afterwards) and a notice in the result says so; the shared
        model, its device and its notices are left as they were.
    """
    if not 0.0 <= score_thresh < 1.0:
        raise ValueError(f"score_thresh must be in [0, 1), got {score_thresh}")
    notices: list[str] = []
    device = loaded.device
    fallback: RetinaNet | None = None
    with loaded.lock:
        try:
            dense, timings = _forward_dense(loaded.model, image, device)
        except torch.OutOfMemoryError:
            if device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            fallback = cpu_copy(loaded.model)
    if fallback is not None:  # a private copy: it needs no lock, and other requests keep the GPU meanwhile
        device = torch.device("cpu")
        notices.append(CPU_FALLBACK_NOTICE)
        dense, timings = _forward_dense(fallback, image, device)
    post = {"score_thresh": score_thresh, "topk": topk, "nms_thresh": nms_thresh}
    return _finish(dense, timings, device, notices, detections_per_img=detections_per_img, **post)


class BatchInference:
    """Batched forward passes for the model scan, adapting to the GPU's memory.

    Each call takes images of one padded input size (:func:`padded_input_hw`; the scan groups them) and runs them
    ``batch_size`` at a time under the model's lock, with torchvision's postprocessing defaults. On a CUDA
    out-of-memory error the batch size is halved, for this call and every later one, and the batch retried; an image
    that does not fit alone runs on a CPU copy of the model (:func:`cpu_copy`). Each event is one line given to
    ``notice`` (the CLI prints it, the page shows it).

    Args:
        loaded: the model.
        batch_size: images per forward pass (>= 1).
        notice: called with each out-of-memory event's line.

    Example (the demo model on the CPU, two 480x640 images in one pass):
        >>> from explorer.detection.loading import load_demo_model
        >>> run = BatchInference(load_demo_model(torch.device("cpu")), batch_size=2)
        >>> [len(r.dense.cls_logits) for r in run([np.zeros((480, 640, 3), np.uint8)] * 2)]
        [57600, 57600]
    """

    def __init__(self, loaded: LoadedModel, batch_size: int, *, notice: Callable[[str], None] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.loaded = loaded
        self.batch_size = batch_size
        self.notice = notice or (lambda line: None)

    def __call__(self, images: list[np.ndarray]) -> list[InferenceResult]:
        """Results for ``images`` (one padded input size), in order."""
        results: list[InferenceResult] = []
        while len(results) < len(images):
            chunk = images[len(results) : len(results) + self.batch_size]
            results.extend(self._run(chunk))
        return results

    def _run(self, chunk: list[np.ndarray]) -> list[InferenceResult]:
        """One forward pass; on out-of-memory, fewer results (the batch size halved) or a CPU copy's one."""
        device = self.loaded.device
        with self.loaded.lock:
            try:
                dense, timings = _forward_dense_batch(self.loaded.model, chunk, device)
            except torch.OutOfMemoryError:
                if device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if len(chunk) > 1:
                    self.batch_size = max(1, len(chunk) // 2)
                    self.notice(
                        f"CUDA ran out of memory on a batch of {len(chunk)} images: continuing with batches of "
                        f"{self.batch_size}"
                    )
                    return []
                fallback = cpu_copy(self.loaded.model)
            else:
                fallback = None
        if fallback is None:
            return [_finish(d, timings, device, []) for d in dense]
        self.notice(CPU_FALLBACK_NOTICE)
        cpu = torch.device("cpu")
        dense, timings = _forward_dense_batch(fallback, chunk, cpu)
        return [_finish(dense[0], timings, cpu, [CPU_FALLBACK_NOTICE])]
