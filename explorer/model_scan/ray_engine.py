"""The model scan on Ray Data: ``python -m explorer model-scan ... --engine ray``.

The same scan as :func:`explorer.model_scan.run.iter_scan`, the same rows in the same order, in one ``ray.data``
pipeline of two stages that overlap:

1. read: CPU actors read and decode the images (:func:`explorer.model_scan.run.prepare_image`, the safe decoder's
   size checks included) and compute each image's padded input size;
2. model: a fixed pool of model actors (``ActorPoolStrategy``), one per GPU (``num_gpus=1``) or, on a cluster with
   no GPU, ``actors`` CPU actors; each runs the local engine's per-batch function
   (:func:`explorer.model_scan.run.scan_pending`: grouped by padded input size, batched, CUDA out-of-memory halving
   the batch) and sends back pickled :class:`explorer.model_scan.run.ImageResult` s with the out-of-memory notices.

The driver receives the results in scan order (``preserve_order``) and hands them to the caller exactly as the local
engine does, so the CLI writes them through the same :class:`explorer.model_scan.store.ScanStore` (resuming skips the
same image ids) and the summary and the Model scan page read them unchanged.

Where it runs: ``ray.init()`` without an address starts a local Ray instance on this machine's CPUs and GPUs (and
stops it at the end); with ``RAY_ADDRESS`` set (``auto`` for the cluster this machine belongs to, or
``ray://HOST:10001``) it connects to that cluster, ships the ``explorer`` package to its workers, and the workers must
be able to read the images (a shared folder; a ``.zip`` travels with the tasks). Install with
``pip install 'ray[data]==2.60.0'``.

Example (a local Ray instance with two CPUs; several seconds to start):
    >>> import ray                                                                  # doctest: +SKIP
    >>> start_ray(num_cpus=2)                                                       # doctest: +SKIP
    >>> results = list(iter_scan(ds, store, load_demo_model(), ModelScanConfig()))  # doctest: +SKIP
    >>> ray.shutdown()                                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explorer.dataset.coco import CocoDataset
from explorer.dataset.image_stores import ImageStore
from explorer.detection.architectures import LoadedModel
from explorer.detection.inference import BatchInference, cpu_copy
from explorer.model_scan.run import (
    ImageResult,
    ModelScanConfig,
    check_categories,
    in_order,
    prepare_image,
    scan_order,
    scan_pending,
)

#: The line printed when ``--engine ray`` is asked for without Ray.
INSTALL_HINT = "--engine ray needs Ray Data: pip install 'ray[data]==2.60.0'"
#: The ``explorer`` package, shipped to a remote cluster's workers.
PACKAGE = Path(__file__).resolve().parents[1]


def import_ray() -> Any:
    """The ``ray`` module with ``ray.data``, or ``ValueError`` with :data:`INSTALL_HINT` when it is not installed."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return ray


def start_ray(num_cpus: int | None = None) -> bool:
    """Start or join Ray unless it is running: the cluster at ``$RAY_ADDRESS`` (the ``explorer`` package shipped to
    its workers), else a local instance with ``num_cpus`` CPUs (all by default). Returns whether it started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"py_modules": [str(PACKAGE)]}, log_to_driver=False)
    else:
        path = os.pathsep.join(p for p in (str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}}, log_to_driver=False)
    return True


def _resolve(ref_in_list: list) -> Any:
    """A value put in Ray's object store, passed inside a list (so Ray hands the reference itself over)."""
    import ray

    return ray.get(ref_in_list[0])


class Reader:
    """The read stage: decodes a batch of ``position`` / ``index`` rows into pickled
    :class:`explorer.model_scan.run.Pending` images (error rows included)."""

    def __init__(self, ds: list, store: ImageStore, transform: torch.nn.Module) -> None:
        self.ds: CocoDataset = _resolve(ds)
        self.store = store
        self.transform = transform

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pending = [
            prepare_image(self.ds, int(i), self.store, self.transform, int(p))
            for p, i in zip(batch["position"], batch["index"], strict=True)
        ]
        return {"pending": _objects(pickle.dumps(p, protocol=5) for p in pending)}


class ModelActor:
    """The model stage: one model on this actor's device (its GPU, else the CPU with ``threads`` torch threads);
    each batch of pending images becomes ``position`` / ``result`` (pickled ImageResult) / ``notices`` (JSON)."""

    def __init__(self, ds: list, model: list, config: ModelScanConfig, threads: int) -> None:
        self.ds: CocoDataset = _resolve(ds)
        self.config = config
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cpu":
            torch.set_num_threads(threads)
        spec = _resolve(model)
        self.loaded = LoadedModel(spec["model"].to(device), spec["arch"], spec["source"], spec["names"], device)
        self.notices: list[str] = []
        self.run = BatchInference(self.loaded, config.batch_size_on(device), notice=self.notices.append)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pending = [pickle.loads(b) for b in batch["pending"]]
        pairs = scan_pending(self.ds, pending, self.run, self.loaded, self.config)
        notices = [json.dumps(self.notices)] + ["[]"] * (len(pairs) - 1) if pairs else []
        self.notices.clear()
        return {
            "position": np.array([p for p, _ in pairs], np.int64),
            "result": _objects(pickle.dumps(r, protocol=5) for _, r in pairs),
            "notices": _objects(notices),
        }


def _objects(values: Iterator | list) -> np.ndarray:
    items = list(values)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _model_spec(loaded: LoadedModel) -> dict:
    """What the model actors rebuild the model from: a CPU copy (no second copy on the GPU) and its names."""
    with loaded.lock:
        model = cpu_copy(loaded.model) if loaded.device.type != "cpu" else loaded.model
        return {"model": model, "arch": loaded.arch, "source": loaded.source, "names": dict(loaded.class_names)}


def _pipeline(ray: Any, order: list[int], ds_ref: Any, store: ImageStore, loaded: LoadedModel, config, actors):
    """The two-stage ``ray.data`` pipeline over ``order`` (see the module docstring)."""
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False  # the CLI has its own
    ctx.print_on_execution_start = False
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    n_actors = actors or max(1, gpus)
    readers = max(1, min(8, cpus - (0 if gpus else n_actors)))
    threads = max(1, (cpus - readers) // n_actors)
    batch = config.batch_size_on(torch.device("cuda" if gpus else "cpu"))
    items = ray.data.from_items([{"position": p, "index": i} for p, i in enumerate(order)])
    read = items.map_batches(
        Reader,
        fn_constructor_kwargs={"ds": [ds_ref], "store": store, "transform": loaded.model.transform},
        batch_size=batch, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=readers), num_cpus=1,
    )  # fmt: skip
    spec_ref = ray.put(_model_spec(loaded))
    placement = {"num_gpus": 1} if gpus else {"num_cpus": threads}
    return read.map_batches(
        ModelActor,
        fn_constructor_kwargs={"ds": [ds_ref], "model": [spec_ref], "config": config, "threads": threads},
        batch_size=batch, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=n_actors), **placement,
    )  # fmt: skip


def iter_scan(
    ds: CocoDataset,
    store: ImageStore,
    loaded: LoadedModel,
    config: ModelScanConfig,
    *,
    skip: set | None = None,
    progress: Callable[[int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
    actors: int | None = None,
) -> Iterator[ImageResult]:
    """:func:`explorer.model_scan.run.iter_scan` on Ray Data: the same results in the same order.

    Args:
        ds, store, loaded, config, skip, progress, notice: as the local engine's.
        actors: model actors (default: one per GPU of the cluster, else 1 CPU actor).
    """
    if actors is not None and actors < 1:
        raise ValueError(f"actors must be >= 1, got {actors}")
    ray = import_ray()
    check_categories(ds, loaded)
    order = scan_order(ds, config, skip)
    if not order:
        return
    started = start_ray()
    try:
        scanned = _pipeline(ray, order, ray.put(ds), store, loaded, config, actors)

        def pairs() -> Iterator[tuple[int, ImageResult]]:
            for batch in scanned.iter_batches(batch_size=None, batch_format="numpy"):
                for position, result, lines in zip(batch["position"], batch["result"], batch["notices"], strict=True):
                    for line in json.loads(lines):
                        if notice is not None:
                            notice(line)
                    yield int(position), pickle.loads(result)

        for done, result in enumerate(in_order(pairs()), start=1):
            yield result
            if progress is not None:
                progress(done, len(order))
    finally:
        if started:
            ray.shutdown()
