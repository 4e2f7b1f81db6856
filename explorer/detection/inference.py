"""Running a model on one image: :func:`run_inference`.

It runs the model stage by stage under the model's lock (torchvision's ``AnchorGenerator`` caches per-size anchors on
itself during forward, so a shared model is not thread-safe), times the stages, and returns the final detections,
the candidates before NMS and the dense outputs (``explorer.detection.outputs``). A CUDA out-of-memory error runs
that one image on a CPU copy of the model (:func:`cpu_copy`) with a notice; the shared model stays on the GPU for
every other request.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.models.detection import RetinaNet

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


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"image is too small: {arr.shape[1]}x{arr.shape[0]} pixels")
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


@torch.inference_mode()
def _forward_dense(model: RetinaNet, image: np.ndarray, device: torch.device) -> tuple[DenseOutputs, dict[str, float]]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tensor = image_to_tensor(image)
    check_input_size(tensor.shape[1], tensor.shape[2], float(model.transform.min_size[-1]), model.transform.max_size)
    tensor = tensor.to(device)
    images, _ = model.transform([tensor])
    _sync(device)
    t1 = time.perf_counter()
    features = list(model.backbone(images.tensors).values())
    _sync(device)
    t2 = time.perf_counter()
    head = model.head(features)
    anchors = model.anchor_generator(images, features)[0]
    _sync(device)
    t3 = time.perf_counter()
    timings["preprocess"] = (t1 - t0) * 1000
    timings["backbone+FPN"] = (t2 - t1) * 1000
    timings["head"] = (t3 - t2) * 1000
    grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
    a = model.anchor_generator.num_anchors_per_location()[0]
    levels = torch.cat([torch.full((gh * gw * a,), i, dtype=torch.int64) for i, (gh, gw) in enumerate(grid_sizes)])
    dense = DenseOutputs(
        cls_logits=head["cls_logits"][0].float().cpu(),
        bbox_deltas=head["bbox_regression"][0].float().cpu(),
        anchors=anchors.float().cpu(),
        levels=levels,
        grid_sizes=grid_sizes,
        anchors_per_location=a,
        input_size=(int(images.image_sizes[0][0]), int(images.image_sizes[0][1])),
        image_size=(int(image.shape[0]), int(image.shape[1])),
    )
    return dense, timings


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
        notices.append(
            "CUDA ran out of memory: this image ran on a CPU copy of the model (slower); the model stays "
            "on the GPU for the next image."
        )
        dense, timings = _forward_dense(fallback, image, device)
    t0 = time.perf_counter()
    detections, candidates = postprocess_dense(
        dense, score_thresh=score_thresh, topk=topk, nms_thresh=nms_thresh, detections_per_img=detections_per_img
    )
    timings["postprocess"] = (time.perf_counter() - t0) * 1000
    timings["total"] = sum(timings.values())
    return InferenceResult(detections, candidates, dense, timings, device_name(device), notices)
