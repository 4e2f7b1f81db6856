"""The three sources of weights, each giving a :class:`~explorer.detection.architectures.LoadedModel`:

- torchvision's COCO weights for ``retinanet_resnet50_fpn`` (v1) and ``retinanet_resnet50_fpn_v2`` through
  torchvision's own weights API (:func:`load_coco_model`): read from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``), downloaded into it when the machine is online and the operator allows it
  (``FOCALSCOPE_ALLOW_DOWNLOAD``, off by default under ``FOCALSCOPE_HOSTED=1``), and otherwise a
  :class:`WeightsUnavailableError` that says where the file should go;
- a user's checkpoint (:func:`load_checkpoint_model`): a ``.pt``/``.pth`` state dict read safely
  (:func:`explorer.detection.checkpoints.read_state_dict`), its architecture recognised from its keys
  (:func:`detect_architecture`), class names from a COCO categories list (:func:`parse_categories`);
- the project's demo model (:func:`load_demo_model`), shipped in ``explorer/detection/models/`` (see ``demo_model.py``).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import socket
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import torch

from explorer import settings
from explorer.detection.architectures import (
    ARCHITECTURES,
    BOOKKEEPING_SUFFIX,
    BUILDERS,
    CLS_BIAS,
    CLS_WEIGHT,
    COCO_ARCHITECTURES,
    COCO_WEIGHTS,
    DEMO,
    DEMO_WEIGHTS,
    LoadedModel,
    architecture_shapes,
    build_model,
    coco_class_names,
    demo_class_names,
    select_device,
    to_inference,
)
from explorer.detection.checkpoints import read_state_dict
from explorer.detection.demo_model import DEMO_NUM_CLASSES, build_demo_model

#: Largest category id (COCO ids are small; they end up in int32/int64 arrays).
_MAX_CATEGORY_ID = 2**31 - 1
#: Anchors per location of all three architectures: 3 sizes x 3 aspect ratios.
_ANCHORS_PER_LOCATION = 9

_DOWNLOAD_LOCK = threading.Lock()


class WeightsUnavailableError(ValueError):
    """torchvision's COCO weights are neither in the torch hub cache nor downloadable."""


# ------------------------------------------------------------------------------------------- COCO weights, demo model


def coco_weights_path(arch: str) -> Path:
    """Where torchvision's weights API caches the COCO weights of ``arch`` (``$TORCH_HOME/hub/checkpoints/...``)."""
    if arch not in COCO_WEIGHTS:
        raise ValueError(f"no COCO weights for {arch!r}; expected one of {COCO_ARCHITECTURES}")
    url = COCO_WEIGHTS[arch].url
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
    weights = COCO_WEIGHTS[arch]
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
            model = BUILDERS[arch](weights=weights, progress=False)
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
    return LoadedModel(to_inference(model, dev), arch, "coco", coco_class_names(arch), dev)


def load_demo_model(device: torch.device | None = None) -> LoadedModel:
    """The project's demo RetinaNet with its shipped weights (float16 on disk, float32 in memory)."""
    data = DEMO_WEIGHTS.read_bytes()
    state = read_state_dict(data, max_bytes=len(data))  # shipped with the app, not an upload
    model = build_demo_model(DEMO_NUM_CLASSES)
    model.load_state_dict(state)
    dev = device or select_device()
    return LoadedModel(to_inference(model, dev), DEMO, "demo", demo_class_names(), dev)


# -------------------------------------------------------------------------------------------------------- checkpoints


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
    expected = architecture_shapes(arch)
    have = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(BOOKKEEPING_SUFFIX)}
    missing = sorted(set(expected) - set(have))
    unexpected = sorted(set(have) - set(expected))
    class_dependent = (CLS_WEIGHT, CLS_BIAS)
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
    if CLS_WEIGHT not in state:
        raise ValueError(f"the checkpoint has no {CLS_WEIGHT!r}: it is not a RetinaNet state dict")
    rows = int(state[CLS_WEIGHT].shape[0])
    a = _ANCHORS_PER_LOCATION
    if rows % a:
        raise ValueError(f"{CLS_WEIGHT} has {rows} rows, not a multiple of the {a} anchors per location of {arch}")
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
        names = demo_class_names()
    else:
        names = {i: f"class {i}" for i in range(num_classes)}
    model = build_model(arch, num_classes)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(BOOKKEEPING_SUFFIX)]
    unexpected = [k for k in result.unexpected_keys if not k.endswith(BOOKKEEPING_SUFFIX)]
    if missing or unexpected:  # detect/compare above make this unreachable unless torchvision changes
        raise ValueError(f"the checkpoint does not fit {arch}: missing {missing[:6]}, unexpected {unexpected[:6]}")
    dev = device or select_device()
    return LoadedModel(to_inference(model, dev), arch, "checkpoint", names, dev)
