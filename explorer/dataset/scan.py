"""Dataset diagnostics: per-image anchor-label statistics over a whole COCO dataset, exact and fast.

For every image the scan reproduces what torchvision's RetinaNet training sees: the image resized as
``GeneralizedRCNNTransform`` does, its GT boxes scaled by ``resize_boxes`` (float32), the anchors of
``AnchorGenerator`` on the padded input, ``box_iou`` and ``Matcher(pos, neg, allow_low_quality_matches=True)``.
Crowd boxes are left out of matching. The counts per image (positives, ignored, hard negatives with
0 < IoU < neg, easy negatives with IoU = 0, boxes without a positive, boxes positive only through the low-quality
rule, positives per level) equal torchvision's exactly; ``tests/dataset/test_scan.py`` checks it image by image.

The configuration is a :class:`explorer.dataset.scan_config.ScanConfig`, the result a
:class:`explorer.dataset.scan_result.ScanResult`; this module is the driver (device choice, chunks, threads, the
reference path for the images the fast path cannot prove exact, the result tables).

How it is fast (a compiled per-image kernel, no dense IoU matrix; the code is in
:mod:`explorer.dataset.scan_kernel`, driven by ``scan_cpu``, with ``scan_geometry``):

- anchors depend only on the input size: an anchor is (level, cell shape a, row i, column j), and its float32
  coordinates are computed from (i, j) on demand, exactly as the generator does;
- only anchors that overlap a box can have IoU > 0, and for a box those form a rectangle of (i, j) per
  (level, a). Easy negatives are a count: the anchors outside the union of the boxes' rectangles, counted with a
  sweep over horizontal slabs;
- positives, ignored anchors and low-quality matches need IoU >= neg, or IoU equal to a GT's best IoU. A lower
  bound on each GT's best IoU (its IoU with the anchors centred nearest to it) gives a threshold t <= best, and
  the geometry of IoU >= t bounds the candidate anchors to a few cells around the box; exact float32 IoUs are
  computed only for those (about a hundred per box);
- hard negatives = anchors overlapping some box minus the ignored and positive ones.

Images that the fast path cannot prove exact (a box thinner than 1e-3 px, a box that overlaps no anchor) go
through :func:`explorer.anchors.max_iou.assign_max_iou`, the dense-equivalent reference. On a CUDA device,
:func:`scan_dataset` can use a batched torch path (dense IoU per image, the torchvision operations themselves).

Example:
    >>> from explorer.dataset.coco import load_coco
    >>> coco = {"images": [{"id": 1, "width": 640, "height": 480}], "categories": [{"id": 1, "name": "a"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 64, 48],
    ...                          "iscrowd": 0, "area": 3072}]}
    >>> result = scan_dataset(load_coco(coco))
    >>> row = result.images.iloc[0]
    >>> int(row["anchors"]), int(row["positives"]), int(row["ignored"]), int(row["boxes_no_positive"])
    (163206, 35, 76, 0)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.boxes import apply_ratios
from explorer.dataset import scan_tables
from explorer.dataset.coco import CocoDataset
from explorer.dataset.memory import release_free_memory
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_cpu import PER_LEVEL, TOTALS, ChunkOut, scan_chunk
from explorer.dataset.scan_geometry import ElongatedImageError, Geometry, geometry
from explorer.dataset.scan_reference import reference_image_stats
from explorer.dataset.scan_result import ScanResult, box_groups
from explorer.dataset.scan_tables import boxes_table, images_table, levels_table, write_boxes

ProgressFn = Callable[[int, int], None]


#: Images per chunk of the fast path (bounds memory), at most; fewer when images have many boxes, so that a chunk
#: holds about :data:`_CHUNK_BOXES` boxes (the chunks balance the threads and pace the progress bar).
_CHUNK_IMAGES = 2048
_CHUNK_BOXES = 16_000


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


#: Threads of the CPU path by default, at most: the kernel releases the GIL and a chunk needs a few MB.
MAX_THREADS = 8


def _available_cpus() -> int:
    """CPUs this process may run on (its affinity, as a container limits it), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _workers(requested: int | None, chunks: int) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"workers must be >= 1, got {requested}")
        return min(int(requested), max(1, chunks))
    return max(1, min(MAX_THREADS, _available_cpus(), chunks))


#: Why ``device="cuda"`` is refused on a machine without a usable CUDA GPU.
NO_CUDA_MESSAGE = "no CUDA GPU is available; use device 'auto' or 'cpu'"


def _cuda_available() -> bool:
    """True when torch sees a CUDA device; avoids importing torch on machines without NVIDIA device nodes."""
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


@dataclass
class _Matchable:
    """The non-crowd boxes of a dataset, the ones the scan matches, grouped by image.

    Attributes:
        rows: (G,) their rows in the dataset's annotation arrays; image: (G,) their image index (file order
            within an image).
        per_image: (I,) boxes per image; first: (I + 1,) offset of each image's first box in ``rows``.
        boxes_xyxy: (B, 4) the dataset's boxes; ratio_h, ratio_w: (I,) float32 the images' resize ratios.
    """

    rows: np.ndarray
    image: np.ndarray
    per_image: np.ndarray
    first: np.ndarray
    boxes_xyxy: np.ndarray
    ratio_h: np.ndarray
    ratio_w: np.ndarray

    @classmethod
    def of(cls, ds: CocoDataset, geo: Geometry) -> _Matchable:
        rows = np.flatnonzero(~ds.iscrowd)
        image = ds.ann_image[rows]
        per_image = np.bincount(image, minlength=ds.num_images)
        first = np.concatenate([[0], np.cumsum(per_image)])
        return cls(rows, image, per_image, first, ds.boxes_xyxy, geo.ratio_h, geo.ratio_w)

    def input_boxes(self, sel: slice | np.ndarray = slice(None)) -> np.ndarray:
        """(n, 4) float32 the boxes at positions ``sel`` scaled to the input as torchvision's ``resize_boxes``
        (float32 multiply by the per-axis float32 ratio). Computed when needed, not kept: 0.4 GB for 25 M boxes."""
        image = self.image[sel]
        return apply_ratios(self.boxes_xyxy[self.rows[sel]], self.ratio_h[image], self.ratio_w[image])


@dataclass
class _Counts:
    """What every path of the scan fills: ``per_image`` :data:`~explorer.dataset.scan_cpu.TOTALS` (I,) and
    :data:`~explorer.dataset.scan_cpu.PER_LEVEL` (I, L); per matchable box ``box_pos`` (G,) int64, ``box_best``
    (G,) float32, ``box_lq`` (G,) bool; ``fallback`` (I,) bool the images to redo with the reference path."""

    per_image: dict[str, np.ndarray]
    box_pos: np.ndarray
    box_best: np.ndarray
    box_lq: np.ndarray
    fallback: np.ndarray

    @classmethod
    def zeros(cls, n: int, num_levels: int, num_boxes: int) -> _Counts:
        per_image = {key: np.zeros(n, np.int64) for key in TOTALS} | {
            key: np.zeros((n, num_levels), np.int64) for key in PER_LEVEL
        }
        return cls(
            per_image,
            np.zeros(num_boxes, np.int64),
            np.zeros(num_boxes, np.float32),
            np.zeros(num_boxes, bool),
            np.zeros(n, bool),
        )


def scan_dataset(
    ds: CocoDataset,
    config: ScanConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    device: str = "auto",
    chunk_images: int | None = None,
    workers: int | None = None,
    boxes_to: str | os.PathLike | None = None,
) -> ScanResult:
    """Scan every image of a dataset.

    Args:
        ds: from :func:`explorer.dataset.coco.load_coco`.
        config: anchors and thresholds (torchvision's RetinaNet defaults).
        progress: called as ``progress(done_images, total_images)`` after each chunk.
        device: ``"auto"`` or ``"cpu"`` (the compiled CPU kernel, the fastest path measured: 118,000 COCO images
            in 4.9 s on two cores, where the CUDA path took 17.8 s on an H100 host), ``"cuda"`` (the torch path,
            :mod:`explorer.dataset.scan_torch`: torchvision's own operations, dense IoU per image, on the GPU) or
            ``"torch-cpu"`` (the torch path on the CPU: slow, for tests).
        chunk_images: images per chunk of the CPU path (default: 2,048, fewer for images with many boxes).
        workers: threads for the CPU path (the kernel releases the GIL); ``None`` uses one per available CPU, up
            to :data:`MAX_THREADS`, when there are several chunks.
        boxes_to: write the per-box table to this Parquet file (``scan_tables.BOX_SLICE_ROWS`` rows at a time)
            instead of keeping it in memory (a dataset of millions of boxes): ``result.boxes`` then holds only the boxes
            without a positive, and the per-class and per-size aggregates are computed from the box columns.

    Returns:
        A :class:`ScanResult`.

    Raises:
        ValueError: an unknown ``device``, ``"cuda"`` without a CUDA GPU, or an image too elongated for the
            input size (named by id).
    """
    cfg = config or ScanConfig()
    use_torch = _use_torch(device)
    t0 = time.perf_counter()
    n = ds.num_images
    geo = _geometry(ds, cfg)
    m = _Matchable.of(ds, geo)
    counts = _Counts.zeros(n, geo.num_levels, len(m.rows))
    path = "cpu"
    if use_torch:
        from explorer.dataset.scan_torch import scan_torch

        torch_device = "cpu" if device == "torch-cpu" else "cuda"
        path = f"torch-{torch_device}"
        scan_torch(
            m.input_boxes(), m.image, m.per_image, geo, cfg, counts.per_image, counts.box_pos, counts.box_best,
            counts.box_lq, progress=progress, device=torch_device,
        )  # fmt: skip
    else:
        _scan_cpu(m, geo, cfg, counts, progress=progress, chunk_images=chunk_images, workers=workers)
    _redo_with_reference(m, geo, cfg, counts)
    release_free_memory()  # the chunks' temporaries, kept by the threads' heaps, before the tables are built
    if progress is not None and n == 0:
        progress(n, n)
    result = _assemble(ds, cfg, geo, m, counts, boxes_to)
    result.seconds = time.perf_counter() - t0
    result.path = path
    result.reference_images = int(counts.fallback.sum())
    return result


def _use_torch(device: str) -> bool:
    """Whether ``device`` means the torch path (``"cuda"``, ``"torch-cpu"``)."""
    if device not in ("auto", "cpu", "cuda", "torch-cpu"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'torch-cpu', got {device!r}")
    if device == "cuda" and not _cuda_available():
        raise ValueError(NO_CUDA_MESSAGE)
    return device in ("cuda", "torch-cpu")


def _geometry(ds: CocoDataset, cfg: ScanConfig) -> Geometry:
    """The scan geometry of every image; an image too elongated for the input size is named by id."""
    try:
        return geometry(ds.heights, ds.widths, cfg.anchors)
    except ElongatedImageError as err:
        i = err.index
        raise ValueError(f"image id {ds.image_ids[i]} ({ds.file_names[i] or 'no file_name'}): {err}") from None


def _scan_cpu(
    m: _Matchable, geo: Geometry, cfg: ScanConfig, counts: _Counts, *,
    progress: ProgressFn | None, chunk_images: int | None, workers: int | None,
) -> None:  # fmt: skip
    """The fast exact path over chunks of ``chunk_images`` images, on up to ``workers`` threads, into ``counts``."""
    n = len(m.per_image)
    if chunk_images is None:
        mean_boxes = len(m.rows) / max(n, 1)
        chunk_images = int(min(_CHUNK_IMAGES, max(256, _CHUNK_BOXES / max(mean_boxes, 1e-9))))
    step = max(1, int(chunk_images))
    bounds = [(s, min(n, s + step)) for s in range(0, n, step)]

    def run(bound: tuple[int, int]) -> tuple[int, int, ChunkOut]:
        s, e = bound
        bs, be = m.first[s], m.first[e]
        return s, e, scan_chunk(m.input_boxes(slice(bs, be)), m.image[bs:be] - s, e - s, geo, np.arange(s, e), cfg)

    n_workers = _workers(workers, len(bounds))
    if n_workers > 1:
        pool = ThreadPoolExecutor(n_workers)
        outputs = pool.map(run, bounds)
    else:
        pool = None
        outputs = map(run, bounds)
    try:
        for s, e, o in outputs:
            bs, be = m.first[s], m.first[e]
            for key in TOTALS + PER_LEVEL:
                counts.per_image[key][s:e] = getattr(o, key)
            counts.box_pos[bs:be], counts.box_best[bs:be], counts.box_lq[bs:be] = o.box_pos, o.box_best, o.box_lq_only
            counts.fallback[s:e] = o.fallback
            if progress is not None:
                progress(e, n)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _redo_with_reference(m: _Matchable, geo: Geometry, cfg: ScanConfig, counts: _Counts) -> None:
    """Recount the images marked ``fallback`` with :func:`reference_image_stats`."""
    for i in np.flatnonzero(counts.fallback).tolist():
        sl = slice(m.first[i], m.first[i + 1])
        r = reference_image_stats(m.input_boxes(sl), (int(geo.input_h[i]), int(geo.input_w[i])), cfg)
        for key in TOTALS + PER_LEVEL:
            counts.per_image[key][i] = r[key]
        counts.box_pos[sl], counts.box_best[sl], counts.box_lq[sl] = r["box_pos"], r["box_best"], r["box_lq_only"]


# ----------------------------------------------------------------------------------------------------------------
# Result tables
# ----------------------------------------------------------------------------------------------------------------


def _assemble(
    ds: CocoDataset, cfg: ScanConfig, geo: Geometry, m: _Matchable, counts: _Counts,
    boxes_to: str | os.PathLike | None,
) -> ScanResult:  # fmt: skip
    """The :class:`ScanResult` tables from the counts (the per-box one written to ``boxes_to`` when given)."""
    bucket = ds.size_bucket()[m.rows]
    result = ScanResult(
        images=images_table(ds, geo, m, counts, bucket),
        boxes=pd.DataFrame(),
        levels=levels_table(geo, counts.per_image, ds.num_images),
        category_ids=ds.category_ids,
        category_names=list(ds.category_names),
        config=cfg,
    )
    if boxes_to is None:
        result.boxes = boxes_table(ds, m, counts, bucket)
        return result
    write_boxes(boxes_to, ds, m, counts, bucket)
    no_pos = np.flatnonzero(counts.box_pos == 0)
    result.boxes = boxes_table(ds, m, counts, bucket, no_pos).set_axis(no_pos)  # rows of the full table
    result.boxes_path = str(boxes_to)
    result.class_groups, result.size_groups = box_groups(
        ds.ann_category, m.image, counts.box_pos, counts.box_lq, counts.box_best, bucket,
        categories=ds.category_ids, slice_rows=scan_tables.BOX_SLICE_ROWS, rows=m.rows,
    )  # fmt: skip
    return result


#: Datasets with more boxes than this have their per-box table streamed to Parquet by the CLI and the page
#: (held in memory it would take several GB: 25 M boxes x 19 columns).
STREAM_BOXES_MIN = 5_000_000
