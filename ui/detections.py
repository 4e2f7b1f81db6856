"""Streamlit-aware helpers of the Live detections page: the one cached model, cached inference, model widgets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import streamlit as st

from explorer import detector, groundtruth
from explorer.coco import CocoDataset, load_coco
from explorer.detector import DenseOutputs, InferenceResult, LoadedModel, WeightsUnavailableError
from explorer.groundtruth import LossBreakdown
from explorer.images import decode_image
from ui.common import digest

MODEL_CHOICES: dict[str, str] = {
    "demo": "Demo model (synthetic shapes, ships with the app)",
    detector.V1: "torchvision retinanet_resnet50_fpn · COCO",
    detector.V2: "torchvision retinanet_resnet50_fpn_v2 · COCO",
    "checkpoint": "Your checkpoint (.pt / .pth state dict)",
}


def md_escape(text: str) -> str:
    """Escape Markdown so that messages show names such as ``__main__.Foo`` or ``*.pt`` literally; URLs are kept
    as they are (Streamlit links them, and a backslash inside one would show)."""
    parts = re.split(r"(https?://[^\s)>]+)", text)
    return "".join(p if i % 2 else re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", p) for i, p in enumerate(parts))


@dataclass
class ModelRequest:
    """What the user asked for. ``checkpoint``/``categories`` are bytes, keyed by their digests (hashed once per
    request: the key is read several times a rerun and a checkpoint can be hundreds of MB)."""

    kind: str
    checkpoint: bytes | None = None
    arch: str = "auto"
    categories: bytes | None = None
    allow_download: bool = True

    @cached_property
    def key(self) -> str:
        parts = [self.kind, self.arch, str(self.allow_download)]
        for blob in (self.checkpoint, self.categories):
            parts.append(digest(blob) if blob else "-")
        return "|".join(parts)


def _build(req: ModelRequest) -> LoadedModel:
    if req.kind == "demo":
        return detector.load_demo_model()
    if req.kind in detector.COCO_ARCHITECTURES:
        return detector.load_coco_model(req.kind, allow_download=req.allow_download)
    if req.kind == "checkpoint":
        if req.checkpoint is None:
            raise ValueError("upload a checkpoint first")
        names = detector.parse_categories(req.categories) if req.categories else None
        return detector.load_checkpoint_model(req.checkpoint, arch=req.arch, categories=names)
    raise ValueError(f"unknown model choice {req.kind!r}")


@st.cache_resource(max_entries=1, show_spinner="Loading the model…")
def _load(key: str, _request: ModelRequest) -> tuple[LoadedModel, str | None, bool]:
    """One model per process (``max_entries=1``: a new request replaces it). A request that cannot be served is
    cached too, as the demo model plus the message, so an offline download is not retried on every rerun."""
    try:
        return _build(_request), None, False
    except WeightsUnavailableError as err:
        return detector.load_demo_model(), str(err), True
    except ValueError as err:
        return detector.load_demo_model(), str(err), False


def load_model(request: ModelRequest) -> tuple[LoadedModel, str | None, bool]:
    """The requested model, or the demo model and a message when the request cannot be served.

    Returns:
        ``(model, message, unavailable)``: ``message`` is None when the request was served; ``unavailable`` is True
        when only torchvision's COCO weights are missing (offline, an expected situation rather than bad input).
    """
    return _load(request.key, request)


@st.cache_resource(max_entries=6, show_spinner="Running the detector…")
def infer(model_key: str, image_key: str, _loaded: LoadedModel, _image: np.ndarray) -> InferenceResult:
    """Inference keyed on the model request and the image digest (the model and image are not hashed).

    A resource cache (shared, read-only, not pickled on every hit): the dense outputs of a COCO model are ~60 MB.
    """
    return detector.run_inference(_loaded, _image)


@st.cache_resource(max_entries=4, show_spinner="Computing the per-anchor losses…")
def _breakdown(
    model_key: str,
    image_key: str,
    gt_key: str,
    alpha: float,
    gamma: float,
    _dense: DenseOutputs,
    _gt_boxes: np.ndarray,
    _gt_labels: np.ndarray,
) -> LossBreakdown:
    return groundtruth.loss_breakdown(_dense, _gt_boxes, _gt_labels, alpha=alpha, gamma=gamma)


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
    """:func:`explorer.groundtruth.loss_breakdown`, once per model, image, ground truth and (alpha, gamma): not
    again when only a display widget changes (a COCO model's 163k anchors x 91 classes take about a second)."""
    gt_bytes = (
        np.ascontiguousarray(gt_boxes, np.float32).tobytes() + np.ascontiguousarray(gt_labels, np.int64).tobytes()
    )
    return _breakdown(model_key, image_key, digest(gt_bytes), float(alpha), float(gamma), dense, gt_boxes, gt_labels)


@st.cache_resource(max_entries=2, show_spinner="Decoding the image…")
def decode_upload(key: str, _data: bytes) -> np.ndarray:
    """Decode an upload once per content digest (``key``), not on every rerun; raises ValueError for bad images.
    Shared between reruns and sessions: read it, never write to it."""
    return decode_image(_data)


@st.cache_resource(max_entries=2, show_spinner="Reading the COCO file…")
def read_coco(key: str, _data: bytes) -> CocoDataset:
    """A COCO JSON parsed once per content digest (``key``); shared and read-only (not pickled on every rerun)."""
    return load_coco(_data)


def model_picker() -> ModelRequest:
    """The model widgets (in the sidebar): choice, and for a checkpoint its file, architecture and categories."""
    kind = st.selectbox("Model", list(MODEL_CHOICES), format_func=MODEL_CHOICES.get, key="det_model")
    req = ModelRequest(kind)
    if kind in detector.COCO_ARCHITECTURES:
        req.allow_download = st.checkbox(
            "Download the weights if they are not cached",
            value=True,
            help=f"Cached at {detector.coco_weights_path(kind)}. Offline, the page falls back to the demo model.",
        )
    elif kind == "checkpoint":
        up = st.file_uploader("Checkpoint (.pt / .pth state dict)", type=["pt", "pth"], key="det_ckpt")
        req.arch = st.selectbox(
            "Architecture",
            ["auto", *detector.ARCHITECTURES],
            format_func=lambda a: "detect from the keys" if a == "auto" else detector.ARCH_LABELS[a],
        )
        cats = st.file_uploader("Categories (COCO JSON or list, optional)", type=["json"], key="det_cats")
        req.checkpoint = up.getvalue() if up is not None else None
        req.categories = cats.getvalue() if cats is not None else None
    return req
