"""RetinaNet models, their weights, the device, inference and dense per-anchor outputs.

Three sources of weights:

- torchvision's COCO weights for ``retinanet_resnet50_fpn`` (v1) and ``retinanet_resnet50_fpn_v2`` through
  torchvision's own weights API (:func:`load_coco_model`): read from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``), downloaded into it when the machine is online, and otherwise a
  :class:`WeightsUnavailableError` that says where the file should go;
- a user's checkpoint (:func:`load_checkpoint_model`): a ``.pt``/``.pth`` state dict read with
  ``torch.load(weights_only=True)`` after its zip, storages and tensor shapes are checked against the server's limits
  (:func:`read_state_dict`), architecture detected from its keys, class names from a COCO categories list;
- the project's demo model (:func:`load_demo_model`), shipped in ``explorer/detection/models/`` (see ``demo_model.py``).

Inference (:func:`run_inference`) runs the model stage by stage under the model's lock (torchvision's
``AnchorGenerator`` caches per-size anchors on itself during forward, so a shared model is not thread-safe), times
the stages, and returns the final detections, the candidates before NMS and the dense outputs: the per-anchor class
logits and box deltas with their anchors and levels, from which per-anchor losses are computed without running the
model again (``explorer/groundtruth.py``). A CUDA out-of-memory error runs that one image on a CPU copy of the model
with a notice; the shared model stays on the GPU for every other request.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import os
import pickle
import re
import socket
import struct
import threading
import time
import urllib.error
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import (
    RetinaNet,
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import boxes as box_ops

from explorer import settings
from explorer.anchors.grid import scale_boxes
from explorer.detection.demo_model import DEMO_NUM_CLASSES, build_demo_model

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
_COCO_WEIGHTS = {V1: RetinaNet_ResNet50_FPN_Weights.COCO_V1, V2: RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1}
_BUILDERS: dict[str, Callable[..., RetinaNet]] = {V1: retinanet_resnet50_fpn, V2: retinanet_resnet50_fpn_v2}

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEMO_WEIGHTS = MODELS_DIR / "demo_retinanet.pt"
DEMO_META = MODELS_DIR / "demo_retinanet.json"

#: Most classes a checkpoint's head may predict (LVIS has 1,204 with the background): with the largest
#: architecture it bounds how many values a checkpoint may hold (:func:`max_checkpoint_values`).
MAX_CHECKPOINT_CLASSES = 2048
#: Largest ``data.pkl`` in a checkpoint (the pickled names, shapes and storage keys; a RetinaNet's is ~50 kB).
_MAX_INDEX_BYTES = 8 << 20
#: Largest zip central directory (~80 bytes per stored tensor; a RetinaNet has ~400): bounds what listing costs.
_MAX_DIRECTORY_BYTES = 1 << 20
#: Uncompressed / compressed size above which a checkpoint is refused as a zip bomb (torch.save never compresses).
_MAX_COMPRESSION_RATIO = 10
#: Tensor types and dtypes read from a checkpoint (a state dict's; float8, sub-byte and complex types are not).
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_DTYPES = frozenset(
    {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16, torch.int32}
    | {torch.int64, torch.bool}
)
#: Largest category id (COCO ids are small; they end up in int32/int64 arrays).
_MAX_CATEGORY_ID = 2**31 - 1
#: Keys that BatchNorm keeps for bookkeeping only; their absence or presence never matters at inference.
_BOOKKEEPING_SUFFIX = "num_batches_tracked"
_CLS_WEIGHT = "head.classification_head.cls_logits.weight"
_CLS_BIAS = "head.classification_head.cls_logits.bias"
#: Anchors per location of all three architectures: 3 sizes x 3 aspect ratios.
_ANCHORS_PER_LOCATION = 9

#: Postprocessing defaults (torchvision's RetinaNet).
SCORE_THRESH = 0.05
TOPK_CANDIDATES = 1000
NMS_THRESH = 0.5
DETECTIONS_PER_IMG = 300

_DOWNLOAD_LOCK = threading.Lock()
#: torchvision RetinaNet's box coder: weights (1, 1, 1, 1), dw/dh clamped at log(1000/16).
_BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


class WeightsUnavailableError(ValueError):
    """torchvision's COCO weights are neither in the torch hub cache nor downloadable."""


# --------------------------------------------------------------------------------------------------- device


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


# --------------------------------------------------------------------------------------------------- models


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
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return _BUILDERS[arch](weights=None, weights_backbone=None, num_classes=num_classes)


@lru_cache(maxsize=len(ARCHITECTURES))
def _architecture_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of ``arch`` with 2 classes (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = build_model(arch, 2)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(_BOOKKEEPING_SUFFIX)}


def _to_inference(model: RetinaNet, device: torch.device) -> RetinaNet:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def coco_class_names(arch: str = V1) -> dict[int, str]:
    """torchvision's COCO names by label id (91 slots; ``"__background__"`` and ``"N/A"`` left out)."""
    names = _COCO_WEIGHTS[arch].meta["categories"]
    return {i: n for i, n in enumerate(names) if n not in ("__background__", "N/A")}


def coco_weights_path(arch: str) -> Path:
    """Where torchvision's weights API caches the COCO weights of ``arch`` (``$TORCH_HOME/hub/checkpoints/...``)."""
    if arch not in _COCO_WEIGHTS:
        raise ValueError(f"no COCO weights for {arch!r}; expected one of {COCO_ARCHITECTURES}")
    url = _COCO_WEIGHTS[arch].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    with _DOWNLOAD_LOCK:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(old)


def load_coco_model(
    arch: str, *, allow_download: bool = True, timeout_s: float = 20.0, device: torch.device | None = None
) -> LoadedModel:
    """torchvision's RetinaNet with its COCO weights, through torchvision's weights API.

    The weights come from the torch hub cache when the file is there (offline works), otherwise they are downloaded
    into it (``allow_download``).

    Args:
        arch: one of :data:`COCO_ARCHITECTURES`.
        allow_download: whether this request may download; the server's operator has the last word
            (``FOCALSCOPE_ALLOW_DOWNLOAD``, off by default under ``FOCALSCOPE_HOSTED=1``, see ``explorer.settings``).
        timeout_s: socket timeout of the download.
        device: where to run (default :func:`select_device`).

    Raises:
        WeightsUnavailableError: not cached and the download is disallowed (by the caller or the operator) or fails
            (offline), or the cached file is unreadable. The message names the expected path.
    """
    path = coco_weights_path(arch)
    weights = _COCO_WEIGHTS[arch]
    if not path.exists() and not settings.limits().allow_download:
        raise WeightsUnavailableError(
            f"torchvision's COCO weights for {arch} are not in the torch hub cache (expected {path}) and this server "
            "does not download them (FOCALSCOPE_HOSTED=1). The operator can set FOCALSCOPE_ALLOW_DOWNLOAD=1 to allow "
            "the download, or copy the file to that path."
        )
    if not path.exists() and not allow_download:
        raise WeightsUnavailableError(
            f"torchvision's COCO weights for {arch} are not in the torch hub cache (expected {path}); "
            "downloading is off. Copy the file there (from a machine online: "
            f"`python -c \"import torchvision; torchvision.models.detection.{arch}(weights='DEFAULT')\"`)."
        )
    try:
        with _socket_timeout(timeout_s):
            model = _BUILDERS[arch](weights=weights, progress=False)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        with contextlib.suppress(OSError):
            partial = path.with_name(path.name + ".partial")
            if partial.exists():
                partial.unlink()
        raise WeightsUnavailableError(
            f"torchvision's COCO weights for {arch} are not in the torch hub cache ({path}) and could not be "
            f"downloaded from {weights.url} ({type(err).__name__}: {err}). The machine is probably offline: copy "
            "the file into that folder, or use the demo model."
        ) from err
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError) as err:
        raise WeightsUnavailableError(
            f"the cached COCO weights at {path} could not be loaded ({type(err).__name__}: {str(err)[:300]}); "
            "delete the file to download it again."
        ) from err
    dev = device or select_device()
    return LoadedModel(_to_inference(model, dev), arch, "coco", coco_class_names(arch), dev)


def demo_metadata() -> dict:
    """The demo model's training metadata (``explorer/detection/models/demo_retinanet.json``)."""
    return json.loads(DEMO_META.read_text())


def _demo_class_names() -> dict[int, str]:
    return {int(c["id"]): str(c["name"]) for c in demo_metadata()["categories"]}


def load_demo_model(device: torch.device | None = None) -> LoadedModel:
    """The project's demo RetinaNet with its shipped weights (float16 on disk, float32 in memory)."""
    data = DEMO_WEIGHTS.read_bytes()
    state = read_state_dict(data, max_bytes=len(data))  # shipped with the app, not an upload
    model = build_demo_model(DEMO_NUM_CLASSES)
    model.load_state_dict(state)
    dev = device or select_device()
    return LoadedModel(_to_inference(model, dev), DEMO, "demo", _demo_class_names(), dev)


# --------------------------------------------------------------------------------------------------- checkpoints


def _zip_directory_bytes(data: bytes) -> int | None:
    """Size of a zip's central directory, read from its end record (zip64 too); None when there is no end record.

    Read before ``zipfile`` lists the archive: listing costs memory per entry, and a small upload can hold millions.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 0xFFFF))
    if end < 0 or len(data) - end < 22:
        return None
    (size,) = struct.unpack_from("<I", data, end + 12)
    if size != 0xFFFFFFFF:
        return size
    locator = end - 20  # zip64: the end record's locator sits just before it and points to the zip64 end record
    if locator < 0 or data[locator : locator + 4] != b"PK\x06\x07":
        return None
    (record,) = struct.unpack_from("<Q", data, locator + 8)
    if record + 56 > len(data) or data[record : record + 4] != b"PK\x06\x06":
        return None
    return struct.unpack_from("<Q", data, record + 40)[0]


def _check_archive(data: bytes, max_bytes: int) -> dict[str, int]:
    """Check that ``data`` is a torch.save zip that stays within ``max_bytes`` once uncompressed.

    Only the zip's directory and its few-byte ``byteorder`` entry are read: nothing large is decompressed.

    Returns:
        storage key (``"0"``, ``"1"``, ...) -> its record's uncompressed size in bytes.

    Raises:
        ValueError: not a zip (a legacy pickle included), a damaged zip, a zip that torch.save did not write, a
            TorchScript archive, sizes over the limits (uncompressed total, compression ratio, index, directory), or
            a big-endian checkpoint.
    """
    if not data.startswith(b"PK\x03\x04"):
        kind = (
            "a plain pickle or a legacy torch.save file (PyTorch < 1.6), which are not read"
            if data[:1] == b"\x80"
            else f"its first bytes {data[:8]!r} are neither a torch.save zip nor a pickle"
        )
        raise ValueError(f"not a PyTorch checkpoint: {kind}. Save it with torch.save(model.state_dict(), path).")
    directory = _zip_directory_bytes(data)
    if directory is None:
        raise ValueError("not a PyTorch checkpoint: a damaged or truncated zip archive (no end-of-archive record)")
    if directory > _MAX_DIRECTORY_BYTES:
        raise ValueError(
            f"not a PyTorch checkpoint: the zip lists {directory / 2**20:.1f} MB of file entries, far more than a "
            f"state dict's (at most {_MAX_DIRECTORY_BYTES / 2**20:.0f} MB)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = {info.filename: info for info in archive.infolist()}
            top = next(iter(names), "").split("/", 1)[0]
            order = names.get(f"{top}/byteorder")
            if order is None:
                byteorder = b"little"  # how torch reads a file without the entry
            elif order.file_size <= len(b"little"):
                byteorder = archive.read(order)
            else:
                byteorder = f"({order.file_size:,} bytes)".encode()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as err:
        raise ValueError(f"not a PyTorch checkpoint: a damaged or truncated zip archive ({err})") from err
    except (NotImplementedError, zlib.error) as err:  # an unknown compression method, a corrupt stream
        raise ValueError(f"not a PyTorch checkpoint: a zip entry cannot be decompressed ({err})") from err
    index = names.get(f"{top}/data.pkl")
    if index is None:
        raise ValueError("not a PyTorch checkpoint: a zip archive without the data.pkl that torch.save writes")
    if f"{top}/constants.pkl" in names:
        raise ValueError(
            "not a PyTorch checkpoint: a TorchScript archive (torch.jit.save); save the state dict instead: "
            "torch.save(model.state_dict(), path)"
        )
    total = sum(info.file_size for info in names.values())
    if total > max_bytes:
        raise ValueError(
            f"the checkpoint expands to {total / 2**20:,.0f} MB uncompressed, over this server's "
            f"{max_bytes / 2**20:,.0f} MB limit (FOCALSCOPE_MAX_CHECKPOINT_MB)"
        )
    if total > _MAX_COMPRESSION_RATIO * len(data):
        raise ValueError(
            f"the checkpoint expands {total / len(data):,.0f}x once uncompressed ({len(data):,} -> {total:,} bytes); "
            "torch.save does not compress, so it is refused as a zip bomb"
        )
    if index.file_size > _MAX_INDEX_BYTES:
        raise ValueError(
            f"not a PyTorch checkpoint: its data.pkl is {index.file_size / 2**20:.0f} MB, far more than a state "
            f"dict's (at most {_MAX_INDEX_BYTES / 2**20:.0f} MB)"
        )
    if byteorder != b"little":  # torch would byteswap every storage, and that crashes on the checks' data-less ones
        raise ValueError(f"the checkpoint's byte order is {byteorder!r}: only little-endian checkpoints are read")
    prefix = f"{top}/data/"
    return {name[len(prefix) :]: info.file_size for name, info in names.items() if name.startswith(prefix)}


def _torch_load(data: bytes, map_location: str) -> object:
    """``torch.load(weights_only=True)`` of checkpoint bytes; every failure becomes a ValueError that says why.

    With ``map_location="meta"`` no storage is read: tensors come back with their declared sizes and strides only.
    """
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = f"it needs the Python object {needed.group(1)}" if needed else "it holds unsupported pickle data"
        raise ValueError(
            f"torch.load(weights_only=True) refused this checkpoint: {detail}, and only tensors and plain "
            "containers are loaded from uploads. Save only the state dict: torch.save(model.state_dict(), path)."
        ) from err
    except Exception as err:  # hostile bytes reach torch's zip and pickle readers: any failure is "unreadable"
        raise ValueError(
            f"not a PyTorch checkpoint that torch.load can read ({type(err).__name__}: {str(err)[:200]})"
        ) from err


def _as_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping inside a loaded checkpoint: unwrapped from ``{"model": ...}`` / ``{"state_dict":
    ...}`` / ``{"model_state_dict": ...}``, with DataParallel's ``module.`` prefix stripped.

    Raises:
        ValueError: not a dict, an empty one, or entries that are not named tensors.
    """
    for wrapper in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"the checkpoint holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if not obj:
        raise ValueError("the checkpoint's state dict is empty")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(repr(k)[:80] for k in bad[:5])
        raise ValueError(f"the checkpoint is not a state dict: {len(bad)} entries are not named tensors ({shown})")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def _dense(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """Whether strides lay a tensor out densely without overlap (contiguous in some dimension order).

    Example:
        >>> _dense((2, 3), (3, 1)), _dense((2, 3), (1, 2)), _dense((4, 4), (0, 0)), _dense((2, 3), (4, 1))
        (True, True, False, False)
    """
    if math.prod(shape) == 0:
        return True
    expected = 1
    for size, stride in sorted((p for p in zip(shape, strides, strict=True) if p[0] != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


@lru_cache(maxsize=1)
def max_checkpoint_values() -> int:
    """Most values (tensor elements, all entries together) a checkpoint may hold.

    The largest of :data:`ARCHITECTURES` with a head of :data:`MAX_CHECKPOINT_CLASSES` classes (a state dict's
    ``num_batches_tracked`` counters aside): about 79 million, 316 MB once in float32.
    """

    def values(arch: str) -> int:
        shapes = _architecture_shapes(arch)  # 2 classes
        per_class = (math.prod(shapes[_CLS_WEIGHT]) + math.prod(shapes[_CLS_BIAS])) // 2
        return sum(math.prod(s) for s in shapes.values()) + (MAX_CHECKPOINT_CLASSES - 2) * per_class

    return max(values(arch) for arch in ARCHITECTURES)


def _check_tensors(state: dict[str, torch.Tensor], record_bytes: dict[str, int]) -> None:
    """Refuse tensors that would cost more memory than the archive holds, before any is read or converted.

    Args:
        state: the state dict as loaded with ``map_location="meta"`` (declared shapes, strides and storage sizes).
        record_bytes: storage records' sizes (:func:`_check_archive`).

    Raises:
        ValueError: a tensor subclass, a sparse, nested or quantized tensor, a dtype a state dict does not hold
            (complex, float8, sub-byte); a storage declared larger than any record; a tensor whose strides overlap or
            skip (``as_strided`` tricks: 2 bytes of storage read as 1.6 GB); more values in total than
            :func:`max_checkpoint_values`.
    """
    largest_record = max(record_bytes.values(), default=0)
    total = 0
    for name, t in state.items():
        if type(t) not in _TENSOR_TYPES or t.layout != torch.strided or t.is_nested or t.dtype not in _DTYPES:
            kind = f"{type(t).__name__} of layout {t.layout} and dtype {t.dtype}"
            raise ValueError(f"tensor {name!r} is a {kind}; only dense real tensors (float, integer, bool) are read")
        storage_bytes = t.untyped_storage().nbytes()
        if storage_bytes > largest_record:
            raise ValueError(
                f"tensor {name!r} declares {storage_bytes:,} bytes of storage but the checkpoint's largest storage "
                f"record holds {largest_record:,} bytes: a damaged or forged checkpoint"
            )
        shape, strides = tuple(t.shape), tuple(t.stride())
        if not _dense(shape, strides) or (t.storage_offset() + t.numel()) * t.element_size() > storage_bytes:
            raise ValueError(
                f"tensor {name!r} of shape {shape} uses overlapping or non-contiguous storage (strides {strides}, "
                f"{t.numel():,} values read from {storage_bytes:,} bytes); only tensors saved from a model's "
                "state_dict() are read"
            )
        total += t.numel()
    cap = max_checkpoint_values()
    if total > cap:
        raise ValueError(
            f"the checkpoint holds {total / 1e6:,.1f} million values, more than any supported architecture "
            f"({cap / 1e6:,.1f} million with {MAX_CHECKPOINT_CLASSES} classes)"
        )


def read_state_dict(data: bytes, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from checkpoint bytes with ``torch.load(weights_only=True)``, refusing hostile files first.

    Accepts a bare state dict or one wrapped as ``{"model": ...}`` / ``{"state_dict": ...}`` (torchvision's
    reference scripts, Lightning), strips a ``module.`` prefix (DataParallel) and converts floats to float32.

    Nothing is decompressed, read or converted before the checks pass: the zip's uncompressed size and compression
    ratio (from its directory), then every tensor's declared storage size, strides and the total value count (from
    a ``map_location="meta"`` load, which reads the pickled index only).

    Args:
        data: the ``.pt``/``.pth`` bytes (the zip format torch.save writes).
        max_bytes: limit on the compressed and the uncompressed size; default ``settings.limits()``
            (``FOCALSCOPE_MAX_CHECKPOINT_MB``).

    Raises:
        ValueError: empty or oversized data, bytes that are not a torch.save zip ("not a PyTorch checkpoint: ..."),
            a pickle that ``weights_only`` refuses, content that is not a mapping of names to tensors, or tensors
            that would cost more memory than their bytes (see :func:`_check_tensors`).
    """
    limit = settings.limits().max_checkpoint_bytes if max_bytes is None else max_bytes
    if not data:
        raise ValueError("the checkpoint is empty (0 bytes): not a PyTorch checkpoint")
    if len(data) > limit:
        raise ValueError(
            f"the checkpoint is {len(data) / 2**20:,.0f} MB, over this server's {limit / 2**20:,.0f} MB limit "
            "(FOCALSCOPE_MAX_CHECKPOINT_MB)"
        )
    record_bytes = _check_archive(data, limit)
    _check_tensors(_as_state_dict(_torch_load(data, "meta")), record_bytes)
    state = _as_state_dict(_torch_load(data, "cpu"))
    for name, t in state.items():  # a tensor pickled without data (torch's meta rebuild) stays on the meta device
        if t.device.type != "cpu":
            raise ValueError(f"tensor {name!r} has no data (it was saved on the {t.device.type} device)")
    return {name: t.float() if t.is_floating_point() else t for name, t in state.items()}


def _short(value: object, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_categories(data: bytes | str | list | dict) -> dict[int, str]:
    """Class names from a COCO categories list: a COCO JSON (``{"categories": [...]}``) or the bare list.

    Returns:
        category id -> name. torchvision's convention is used: the model's label is the category id.

    Raises:
        ValueError: not JSON (nested too deeply, numbers too long included), no categories, entries without an
            integer ``id`` in 0..2**31-1 and a string ``name``, or duplicate ids.
    """
    obj = data
    if isinstance(data, bytes | str):
        try:
            obj = json.loads(data)
        except RecursionError:
            raise ValueError(
                "the categories file is not a COCO categories list: its JSON is nested too deeply to read"
            ) from None
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's 4,300 digits
            raise ValueError(f"the categories file is not valid JSON ({str(err)[:200]})") from err
    if isinstance(obj, dict):
        if "categories" not in obj:
            raise ValueError("the categories JSON has no 'categories' key (expected a COCO file or a list)")
        obj = obj["categories"]
    if not isinstance(obj, list) or not obj:
        raise ValueError("the categories must be a non-empty list of {'id': int, 'name': str}")
    names: dict[int, str] = {}
    for entry in obj:
        if not isinstance(entry, dict):
            raise ValueError(f"category entry {_short(entry)} is not an object")
        cid, name = entry.get("id"), entry.get("name")
        if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid <= _MAX_CATEGORY_ID:
            raise ValueError(f"category {_short(entry)}: 'id' must be an integer from 0 to {_MAX_CATEGORY_ID:,}")
        if not isinstance(name, str):
            raise ValueError(f"category {_short(entry)}: 'name' must be a string")
        if cid in names:
            raise ValueError(f"category id {cid} appears twice ({_short(names[cid])} and {_short(name)})")
        names[cid] = name
    return names


def _shown(keys: list[str], limit: int = 6) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _key_problems(missing: list[str], unexpected: list[str], mismatched: list[str]) -> list[str]:
    """Readable phrases for the key differences of a checkpoint, e.g. ['2 missing keys (a, b)']."""
    named = (("missing keys", missing), ("unexpected keys", unexpected), ("keys with other shapes", mismatched))
    return [f"{len(keys)} {what} ({_shown(keys)})" for what, keys in named if keys]


def _compare_keys(state: dict[str, torch.Tensor], arch: str) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape-mismatched) key names of ``state`` against ``arch`` (class count aside)."""
    expected = _architecture_shapes(arch)
    have = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(_BOOKKEEPING_SUFFIX)}
    missing = sorted(set(expected) - set(have))
    unexpected = sorted(set(have) - set(expected))
    class_dependent = (_CLS_WEIGHT, _CLS_BIAS)
    mismatched = sorted(k for k in set(have) & set(expected) if k not in class_dependent and have[k] != expected[k])
    return missing, unexpected, mismatched


def detect_architecture(state: dict[str, torch.Tensor]) -> str:
    """The architecture whose parameter names and shapes match ``state`` exactly (class count aside).

    Raises:
        ValueError: no architecture matches; the message names the missing, unexpected and mismatched keys
            against the closest one.
    """
    best: tuple[int, str, tuple[list[str], list[str], list[str]]] | None = None
    for arch in ARCHITECTURES:
        diff = _compare_keys(state, arch)
        score = sum(len(d) for d in diff)
        if score == 0:
            return arch
        if best is None or score < best[0]:
            best = (score, arch, diff)
    assert best is not None
    _, arch, (missing, unexpected, mismatched) = best
    parts = _key_problems(missing, unexpected, mismatched)
    raise ValueError(
        f"the checkpoint does not match any supported architecture {ARCHITECTURES}; closest is {arch} with "
        + "; ".join(parts)
    )


def checkpoint_num_classes(state: dict[str, torch.Tensor], arch: str) -> int:
    """Logits per anchor stored in the checkpoint's classification layer."""
    if _CLS_WEIGHT not in state:
        raise ValueError(f"the checkpoint has no {_CLS_WEIGHT!r}: it is not a RetinaNet state dict")
    rows = int(state[_CLS_WEIGHT].shape[0])
    a = _ANCHORS_PER_LOCATION
    if rows % a:
        raise ValueError(f"{_CLS_WEIGHT} has {rows} rows, not a multiple of the {a} anchors per location of {arch}")
    return rows // a


def load_checkpoint_model(
    data: bytes,
    *,
    arch: str = "auto",
    categories: dict[int, str] | None = None,
    device: torch.device | None = None,
) -> LoadedModel:
    """A RetinaNet from a user's checkpoint (state dict bytes).

    Args:
        data: the ``.pt``/``.pth`` bytes.
        arch: one of :data:`ARCHITECTURES`, or ``"auto"`` to detect it from the keys.
        categories: category id -> name (:func:`parse_categories`); ids must fit the checkpoint's class count.
            Without it, COCO names are used for a 91-class torchvision model, the shape names for a 9-class demo
            model, and ``"class k"`` otherwise.

    Raises:
        ValueError: unreadable checkpoint (see :func:`read_state_dict`), wrong architecture (missing, unexpected or
            mis-shaped keys by name), or a class count that does not fit the categories.
    """
    state = read_state_dict(data)
    if arch == "auto":
        arch = detect_architecture(state)
    elif arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected 'auto' or one of {ARCHITECTURES}")
    else:
        missing, unexpected, mismatched = _compare_keys(state, arch)
        problems = _key_problems(missing, unexpected, mismatched)
        if problems:
            raise ValueError(f"the checkpoint does not fit {arch}: " + "; ".join(problems))
    num_classes = checkpoint_num_classes(state, arch)
    if categories:
        too_big = {cid: name for cid, name in categories.items() if cid >= num_classes}
        if too_big:
            cid = max(too_big)
            raise ValueError(
                f"wrong class count: the checkpoint predicts {num_classes} classes (label ids 0..{num_classes - 1}) "
                f"but category {too_big[cid]!r} has id {cid}"
            )
        names = dict(categories)
    elif num_classes == 91 and arch in COCO_ARCHITECTURES:
        names = coco_class_names(arch)
    elif num_classes == DEMO_NUM_CLASSES and arch == DEMO:
        names = _demo_class_names()
    else:
        names = {i: f"class {i}" for i in range(num_classes)}
    model = build_model(arch, num_classes)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_BOOKKEEPING_SUFFIX)]
    unexpected = [k for k in result.unexpected_keys if not k.endswith(_BOOKKEEPING_SUFFIX)]
    if missing or unexpected:  # detect/compare above make this unreachable unless torchvision changes
        raise ValueError(f"the checkpoint does not fit {arch}: missing {missing[:6]}, unexpected {unexpected[:6]}")
    dev = device or select_device()
    return LoadedModel(_to_inference(model, dev), arch, "checkpoint", names, dev)


# --------------------------------------------------------------------------------------------------- inference


@dataclass
class Detections:
    """Boxes in original-image pixels.

    Attributes:
        boxes: (D, 4) float32 xyxy.
        scores: (D,) float32 in (0, 1).
        labels: (D,) int64 label ids.
        levels: (D,) int64 pyramid level index (0 = P3) of the anchor each box came from.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    levels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )


@dataclass
class DenseOutputs:
    """Everything the head predicts for one image, before postprocessing (torchvision order).

    Attributes:
        cls_logits: (N, K) float32 class logits per anchor.
        bbox_deltas: (N, 4) float32 box deltas (dx, dy, dw, dh), BoxCoder weights (1, 1, 1, 1).
        anchors: (N, 4) float32 xyxy anchors in network-input pixels (the resized image).
        levels: (N,) int64 level index 0..L-1 (0 = P3).
        grid_sizes: per level (gh, gw).
        anchors_per_location: A.
        input_size: (h, w) of the resized image before padding (what boxes are clipped to).
        image_size: (h, w) of the original image.
    """

    cls_logits: torch.Tensor
    bbox_deltas: torch.Tensor
    anchors: torch.Tensor
    levels: torch.Tensor
    grid_sizes: list[tuple[int, int]]
    anchors_per_location: int
    input_size: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def level_counts(self) -> list[int]:
        return [gh * gw * self.anchors_per_location for gh, gw in self.grid_sizes]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Original pixels per input pixel, (sx, sy)."""
        return self.image_size[1] / self.input_size[1], self.image_size[0] / self.input_size[0]

    def to_original(self, boxes: torch.Tensor) -> torch.Tensor:
        """Input-pixel xyxy boxes -> original-image pixels (torchvision's ``resize_boxes``)."""
        sx, sy = self.scale_xy
        return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image xyxy boxes -> network-input pixels, (M, 4) float32.

        Exactly torchvision's ``resize_boxes`` (:func:`explorer.anchors.grid.scale_boxes`: float32 ratio input /
        original, multiplied), so the labels of anchors at an IoU threshold tie are torchvision's.
        """
        return scale_boxes(boxes, self.image_size, self.input_size)

    def decoded_boxes(self) -> torch.Tensor:
        """Every anchor's predicted box, (N, 4) float32 xyxy in input pixels, clipped to the input size."""
        boxes = decode_deltas(self.bbox_deltas, self.anchors)
        return box_ops.clip_boxes_to_image(boxes, self.input_size)

    def max_prob_maps(self) -> list[np.ndarray]:
        """Per level, the highest class probability over anchors and classes: (gh, gw) float32 maps."""
        probs = torch.sigmoid(self.cls_logits).amax(dim=1)
        maps = []
        for (gh, gw), chunk in zip(self.grid_sizes, probs.split(self.level_counts), strict=True):
            maps.append(chunk.reshape(gh, gw, self.anchors_per_location).amax(dim=2).numpy().astype(np.float32))
        return maps

    def split_per_level(self) -> tuple[dict[str, list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Head outputs and anchors split per level, batched as torchvision's ``postprocess_detections`` wants."""
        counts = self.level_counts
        head = {
            "cls_logits": [t[None] for t in self.cls_logits.split(counts)],
            "bbox_regression": [t[None] for t in self.bbox_deltas.split(counts)],
        }
        return head, [list(self.anchors.split(counts))]


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


def decode_deltas(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """R-CNN delta decoding with weights (1, 1, 1, 1) and dw/dh clamped at log(1000/16) (reference.md 2.1).

    Args:
        deltas: (N, 4) (dx, dy, dw, dh).
        anchors: (N, 4) xyxy.

    Returns:
        (N, 4) xyxy, the same arithmetic as torchvision's ``BoxCoder.decode_single``.
    """
    return _BOX_CODER.decode_single(deltas, anchors)


def level_candidates(
    cls_logits: torch.Tensor,
    bbox_deltas: torch.Tensor,
    anchors: torch.Tensor,
    level_counts: list[int],
    input_size: tuple[int, int],
    *,
    score_thresh: float = SCORE_THRESH,
    topk: int = TOPK_CANDIDATES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's per-level candidate selection: sigmoid, score > thresh, top-k over (anchor, class), decode, clip.

    Args:
        cls_logits: (N, K) float32 class logits; bbox_deltas: (N, 4) float32; anchors: (N, 4) float32 xyxy.
        level_counts: anchors per level, in order (they sum to N).
        input_size: (h, w) the boxes are clipped to.

    Returns:
        ``(boxes (C, 4) input pixels, scores (C,), labels (C,), levels (C,))``.
    """
    boxes, scores, labels, levels = [], [], [], []
    num_classes = cls_logits.shape[1]
    start = 0
    for level, count in enumerate(level_counts):
        scores_l = torch.sigmoid(cls_logits[start : start + count]).flatten()
        keep = scores_l > score_thresh
        scores_l = scores_l[keep]
        idx = torch.where(keep)[0]
        k = min(topk, idx.numel())
        scores_l, order = scores_l.topk(k)
        idx = idx[order]
        anchor_idx = torch.div(idx, num_classes, rounding_mode="floor")
        decoded = decode_deltas(
            bbox_deltas[start : start + count][anchor_idx], anchors[start : start + count][anchor_idx]
        )
        boxes.append(box_ops.clip_boxes_to_image(decoded, input_size))
        scores.append(scores_l)
        labels.append(idx % num_classes)
        levels.append(torch.full((k,), level, dtype=torch.int64, device=idx.device))
        start += count
    return torch.cat(boxes), torch.cat(scores), torch.cat(labels), torch.cat(levels)


def candidates_from_dense(
    dense: DenseOutputs, *, score_thresh: float = SCORE_THRESH, topk: int = TOPK_CANDIDATES
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`level_candidates` of the dense outputs: ``(boxes (C, 4) input pixels, scores, labels, levels)``."""
    return level_candidates(
        dense.cls_logits,
        dense.bbox_deltas,
        dense.anchors,
        dense.level_counts,
        dense.input_size,
        score_thresh=score_thresh,
        topk=topk,
    )


def _as_detections(
    dense: DenseOutputs, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, levels: torch.Tensor
) -> Detections:
    return Detections(
        dense.to_original(boxes).numpy().astype(np.float32),
        scores.numpy().astype(np.float32),
        labels.numpy().astype(np.int64),
        levels.numpy().astype(np.int64),
    )


def postprocess_dense(
    dense: DenseOutputs,
    *,
    score_thresh: float = SCORE_THRESH,
    topk: int = TOPK_CANDIDATES,
    nms_thresh: float = NMS_THRESH,
    detections_per_img: int = DETECTIONS_PER_IMG,
) -> tuple[Detections, Detections]:
    """``(final detections, candidates before NMS)`` from dense outputs, in original-image pixels.

    Identical to torchvision's ``RetinaNet.postprocess_detections`` + ``transform.postprocess``.
    """
    boxes, scores, labels, levels = candidates_from_dense(dense, score_thresh=score_thresh, topk=topk)
    keep = box_ops.batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
    final = _as_detections(dense, boxes[keep], scores[keep], labels[keep], levels[keep])
    return final, _as_detections(dense, boxes, scores, labels, levels)


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
    scale = min(min_size / min(height, width), max_size / max(height, width))
    h, w = int(np.floor(height * scale)), int(np.floor(width * scale))
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


def filter_detections(
    dets: Detections, *, score_thresh: float = 0.0, classes: set[int] | None = None, max_detections: int | None = None
) -> Detections:
    """Keep detections with score >= ``score_thresh`` and a label in ``classes``, best ``max_detections`` first."""
    keep = dets.scores >= score_thresh
    if classes is not None:
        keep &= np.isin(dets.labels, np.fromiter(classes, np.int64, len(classes)))
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(-dets.scores[idx], kind="stable")]
    if max_detections is not None:
        idx = idx[: max(0, max_detections)]
    return Detections(dets.boxes[idx], dets.scores[idx], dets.labels[idx], dets.levels[idx])
