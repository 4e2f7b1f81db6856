"""RetinaNet architectures, the device, and a loaded model: what every source of weights builds on.

- the three architectures (:data:`ARCHITECTURES`: the project's demo model, torchvision's ``retinanet_resnet50_fpn``
  v1 and v2) and :func:`build_model` (random weights, never downloads);
- :func:`architecture_shapes`, every parameter's shape, from which checkpoints are checked and recognised;
- the device (:func:`select_device`, ``$FOCALSCOPE_DEVICE``) and :class:`LoadedModel`, a model in eval mode with its
  class names and the lock every forward pass holds; :func:`model_nbytes`, what keeping it loaded costs;
- class names: torchvision's COCO names and the demo model's (``explorer/detection/models/demo_retinanet.json``).

Loading weights into these models is ``explorer.detection.loading``; reading an untrusted checkpoint is
``explorer.detection.checkpoints``. (The shipped demo weights live in the ``models/`` folder beside this module.)
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torchvision.models.detection import (
    RetinaNet,
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)

from explorer.detection.demo_model import build_demo_model

DEMO = "demo"
V1 = "retinanet_resnet50_fpn"
V2 = "retinanet_resnet50_fpn_v2"
#: Architectures a checkpoint can hold, in detection order.
ARCHITECTURES: tuple[str, ...] = (DEMO, V1, V2)
COCO_ARCHITECTURES: tuple[str, ...] = (V1, V2)
ARCH_LABELS: dict[str, str] = {
    DEMO: "demo (ResNet-10 FPN, synthetic shapes)",
    V1: "retinanet_resnet50_fpn (v1)",
    V2: "retinanet_resnet50_fpn_v2",
}
COCO_WEIGHTS = {V1: RetinaNet_ResNet50_FPN_Weights.COCO_V1, V2: RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1}
BUILDERS: dict[str, Callable[..., RetinaNet]] = {V1: retinanet_resnet50_fpn, V2: retinanet_resnet50_fpn_v2}

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEMO_WEIGHTS = MODELS_DIR / "demo_retinanet.pt"
DEMO_META = MODELS_DIR / "demo_retinanet.json"

#: Keys that BatchNorm keeps for bookkeeping only; their absence or presence never matters at inference.
BOOKKEEPING_SUFFIX = "num_batches_tracked"
CLS_WEIGHT = "head.classification_head.cls_logits.weight"
CLS_BIAS = "head.classification_head.cls_logits.bias"


# ------------------------------------------------------------------------------------------------------------- device


def select_device(prefer: str | None = None) -> torch.device:
    """CUDA when available, otherwise the CPU.

    Args:
        prefer: ``"cuda"``, ``"cpu"`` or ``None``/``"auto"``; ``$FOCALSCOPE_DEVICE`` sets it when ``None``.

    Returns:
        The device; ``"cuda"`` without a usable GPU falls back to the CPU.
    """
    choice = (prefer or os.environ.get("FOCALSCOPE_DEVICE") or "auto").lower()
    if choice not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {choice!r}")
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A human-readable device line: ``"CUDA: NVIDIA H100 80GB HBM3"`` or ``"CPU (2 threads)"``."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


# ------------------------------------------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """A model ready for inference, with its class names and its lock.

    Attributes:
        model: the torchvision ``RetinaNet`` in eval mode on ``device``.
        arch: one of :data:`ARCHITECTURES`.
        source: ``"demo"``, ``"coco"`` or ``"checkpoint"``.
        class_names: label id -> name for the ids the model predicts (labels are logit indices).
        device: where it runs.
        notices: messages for the user (e.g. a CPU fallback).
        lock: held during every forward pass.
    """

    model: RetinaNet
    arch: str
    source: str
    class_names: dict[int, str]
    device: torch.device
    notices: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def num_classes(self) -> int:
        return int(self.model.head.classification_head.num_classes)

    def label_name(self, label: int) -> str:
        return self.class_names.get(int(label), f"class {int(label)}")


def model_nbytes(model: LoadedModel | torch.nn.Module) -> int:
    """Bytes held by a model's parameters and buffers (what keeping it loaded costs on its device).

    Example:
        >>> model_nbytes(torch.nn.Linear(3, 2))  # 6 weights + 2 biases, float32
        32
    """
    module = model.model if isinstance(model, LoadedModel) else model
    return sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))


def build_model(arch: str, num_classes: int) -> RetinaNet:
    """A RetinaNet of the given architecture with random weights; never downloads anything.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: logits per anchor (torchvision counts the background slot: 91 for COCO).
    """
    if arch == DEMO:
        return build_demo_model(num_classes)
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return BUILDERS[arch](weights=None, weights_backbone=None, num_classes=num_classes)


@lru_cache(maxsize=len(ARCHITECTURES))
def architecture_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of ``arch`` with 2 classes (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = build_model(arch, 2)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(BOOKKEEPING_SUFFIX)}


def to_inference(model: RetinaNet, device: torch.device) -> RetinaNet:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def coco_class_names(arch: str = V1) -> dict[int, str]:
    """torchvision's COCO names by label id (91 slots; ``"__background__"`` and ``"N/A"`` left out)."""
    names = COCO_WEIGHTS[arch].meta["categories"]
    return {i: n for i, n in enumerate(names) if n not in ("__background__", "N/A")}


def demo_metadata() -> dict:
    """The demo model's training metadata (``explorer/detection/models/demo_retinanet.json``)."""
    return json.loads(DEMO_META.read_text())


def demo_class_names() -> dict[int, str]:
    return {int(c["id"]): str(c["name"]) for c in demo_metadata()["categories"]}
