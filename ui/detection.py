"""Streamlit-aware helpers of the Live detections page: the one cached model, cached inference, model widgets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import streamlit as st

from explorer.cache import BoundedCache, TooLargeError
from explorer.dataset.coco import CocoDataset, load_coco
from explorer.detection import architectures, inference, loading, lossmaps
from explorer.detection.architectures import LoadedModel
from explorer.detection.inference import InferenceResult
from explorer.detection.loading import WeightsUnavailableError
from explorer.detection.lossmaps import LossBreakdown
from explorer.detection.outputs import DenseOutputs
from explorer.settings import MB, limits
from ui.common import (  # noqa: F401 (decode_upload, md_escape: used by the page as ui.*)
    cached,
    decode_upload,
    digest,
    kept,
    kept_file,
    md_escape,
    pixel_limit_help,
    set_kept,
)

MODEL_CHOICES: dict[str, str] = {
    "demo": "Demo model (synthetic shapes, ships with the app)",
    architectures.V1: "torchvision retinanet_resnet50_fpn · COCO",
    architectures.V2: "torchvision retinanet_resnet50_fpn_v2 · COCO",
    "checkpoint": "Your checkpoint (.pt / .pth state dict)",
}


@dataclass
class ModelRequest:
    """What the user asked for. ``checkpoint``/``categories`` are bytes, keyed by their digests (hashed once per
    request: the key is read several times a rerun and a checkpoint can be hundreds of MB).

    ``key`` names the model (the same COCO weights with and without permission to download are one model);
    ``failure_key`` also names the permission, since a refused download is remembered per request.
    """

    kind: str
    checkpoint: bytes | None = None
    arch: str = "auto"
    categories: bytes | None = None
    allow_download: bool = True

    @cached_property
    def key(self) -> str:
        parts = [self.kind, self.arch]
        for blob in (self.checkpoint, self.categories):
            parts.append(digest(blob) if blob is not None else "-")
        return "|".join(parts)

    @property
    def failure_key(self) -> str:
        return f"{self.key}|download={self.allow_download}"


#: The served key of the demo model (what inference is keyed on when a request falls back to it).
DEMO_KEY = ModelRequest("demo").key


@dataclass(frozen=True)
class ServedModel:
    """The model a page runs: the requested one, or the demo model and a message when it cannot be served.

    Attributes:
        model: the model.
        message: None when the request was served, else why the demo model runs instead.
        unavailable: True when only torchvision's COCO weights are missing (offline, expected, not bad input).
        key: the served model's key (the request's, or :data:`DEMO_KEY`): inference is cached on it.
    """

    model: LoadedModel
    message: str | None
    unavailable: bool
    key: str


def _build(req: ModelRequest) -> LoadedModel:
    if req.kind == "demo":
        return loading.load_demo_model()
    if req.kind in architectures.COCO_ARCHITECTURES:
        return loading.load_coco_model(req.kind, allow_download=req.allow_download)
    if req.kind == "checkpoint":
        if req.checkpoint is None:
            raise ValueError("upload a checkpoint first")
        names = loading.parse_categories(req.categories) if req.categories else None
        return loading.load_checkpoint_model(req.checkpoint, arch=req.arch, categories=names)
    raise ValueError(f"unknown model choice {req.kind!r}")


@st.cache_resource(max_entries=1, show_spinner=False)
def _models(max_entries: int, max_bytes: int) -> BoundedCache[LoadedModel]:
    """The models kept in memory, shared by every session: the most recently used ones, by request key, within
    ``limits().models_kept`` and ``limits().model_memory_bytes``."""
    return BoundedCache(max_entries, max_bytes, sizeof=architectures.model_nbytes)


@st.cache_resource(max_entries=1, show_spinner=False)
def _failures() -> BoundedCache[tuple[str, bool]]:
    """Requests that could not be served, with their message: an offline download is not retried on every rerun."""
    return BoundedCache(64, 1 << 20, sizeof=lambda item: len(item[0]))


def _too_large(size: int, budget: int) -> str:
    return (
        f"this model needs {size / MB:,.0f} MB, more than the server's whole model memory budget of "
        f"{budget / MB:,.0f} MB (FOCALSCOPE_MODEL_MEMORY_MB)"
    )


def _demo(models: BoundedCache[LoadedModel]) -> LoadedModel:
    try:
        return models.get_or_create(DEMO_KEY, loading.load_demo_model)
    except TooLargeError:
        return loading.load_demo_model()


def load_model(request: ModelRequest) -> ServedModel:
    """The requested model, or the demo model and a message when the request cannot be served.

    Models are kept by request key, least recently used evicted first, within the server's limits (models kept,
    memory budget); a model larger than the whole budget is refused with a message.
    """
    lim = limits()
    models = _models(lim.models_kept, lim.model_memory_bytes)
    failed = _failures().get(request.failure_key)
    if failed is None:
        try:
            if request.checkpoint is not None and len(request.checkpoint) > lim.model_memory_bytes:
                raise TooLargeError(len(request.checkpoint), lim.model_memory_bytes)
            with st.spinner("Loading the model…"):
                model = models.get_or_create(request.key, lambda: _build(request))
            return ServedModel(model, None, False, request.key)
        except WeightsUnavailableError as err:
            failed = (str(err), True)
        except TooLargeError as err:
            failed = (_too_large(err.size, err.budget), False)
        except ValueError as err:
            failed = (str(err), False)
        _failures().put(request.failure_key, failed)
    return ServedModel(_demo(models), failed[0], failed[1], DEMO_KEY)


def infer(model_key: str, image_key: str, loaded: LoadedModel, image: np.ndarray) -> InferenceResult:
    """Inference once per served model (``model_key``, :attr:`ServedModel.key`) and image digest, in the shared
    cache bounded by ``limits().cache_bytes`` (the dense outputs of a COCO model are ~60 MB). Read-only."""
    return cached(
        "inference",
        (model_key, image_key),
        lambda: inference.run_inference(loaded, image),
        max_entries=6,
        spinner="Running the detector…",
    )


def loss_breakdown(
    model_key: str,
    image_key: str,
    dense: DenseOutputs,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    *,
    alpha: float,
    gamma: float,
) -> LossBreakdown:
    """:func:`explorer.detection.lossmaps.loss_breakdown`, once per model, image, ground truth and (alpha,
    gamma): not
    again when only a display widget changes (a COCO model's 163k anchors x 91 classes take about a second)."""
    gt_bytes = (
        np.ascontiguousarray(gt_boxes, np.float32).tobytes() + np.ascontiguousarray(gt_labels, np.int64).tobytes()
    )
    key = (model_key, image_key, digest(gt_bytes), float(alpha), float(gamma))
    return cached(
        "losses",
        key,
        lambda: lossmaps.loss_breakdown(dense, gt_boxes, gt_labels, alpha=alpha, gamma=gamma),
        max_entries=4,
        spinner="Computing the per-anchor losses…",
    )


def read_coco(key: str, data: bytes) -> CocoDataset:
    """A COCO JSON parsed once per content digest (``key``), in the shared cache bounded by
    ``limits().cache_bytes``; read-only. Raises ValueError for a malformed file (not cached)."""
    return cached("coco", key, lambda: load_coco(data), max_entries=2, spinner="Reading the COCO file…")


def model_picker() -> ModelRequest:
    """The model widgets (in the sidebar): choice, and for a checkpoint its file, architecture and categories."""
    kind = st.selectbox("Model", list(MODEL_CHOICES), format_func=MODEL_CHOICES.get, key=kept("det_model"))
    req = ModelRequest(kind)
    if kind in architectures.COCO_ARCHITECTURES:
        if limits().allow_download:
            req.allow_download = st.checkbox(
                "Download the weights if they are not cached",
                value=True,
                key=kept("det_download"),
                help=f"Cached at {loading.coco_weights_path(kind)}. Offline, the page falls back to the demo model.",
            )
        else:
            req.allow_download = False
            st.caption(
                "Weight downloads are off on this server (the operator allows them with FOCALSCOPE_ALLOW_DOWNLOAD=1): "
                "this model runs only if its COCO weights are already in the server's torch hub cache."
            )
    elif kind == "checkpoint":
        up = kept_file(
            "Checkpoint (.pt / .pth state dict)",
            key="det_ckpt",
            type=["pt", "pth"],
            help=f"Up to {limits().max_checkpoint_bytes / MB:,.0f} MB (FOCALSCOPE_MAX_CHECKPOINT_MB).",
        )
        req.arch = st.selectbox(
            "Architecture",
            ["auto", *architectures.ARCHITECTURES],
            format_func=lambda a: "detect from the keys" if a == "auto" else architectures.ARCH_LABELS[a],
            key=kept("det_arch"),
        )
        cats = kept_file("Categories (COCO JSON or list, optional)", key="det_cats", type=["json"])
        req.checkpoint = up.data if up is not None else None
        req.categories = cats.data if cats is not None else None
    return req


# ---------------------------------------------------------------- an image sent from another page

#: Session-state key of an image sent to Live detections (:func:`send_image`).
SENT = "det_sent"
SENT_SOURCE = "Sent image"


@dataclass(frozen=True)
class SentImage:
    """An image of a dataset sent to Live detections (from the Model scan): its encoded bytes, file name, dataset
    (for its category names) and index there, and where it came from. Lives in the sender's session only."""

    data: bytes
    name: str
    dataset: CocoDataset
    index: int
    origin: str

    def ground_truth(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """((boxes, category ids), (crowd boxes, their ids)) of the image, as the one COCO reader keeps them."""
        ann = self.dataset.image_annotations(self.index)
        return (ann.boxes_xyxy, ann.category_ids), (ann.crowd_xyxy, ann.crowd_category_ids)


def send_image(sent: SentImage) -> None:
    """Give Live detections this image, with its ground truth; the caller then opens the page (``st.switch_page``)."""
    st.session_state[SENT] = sent
    set_kept({"det_source": SENT_SOURCE})
