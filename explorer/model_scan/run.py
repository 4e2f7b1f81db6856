"""The model scan's driver: a detector over every image of a dataset, one row of statistics per image.

Each image is read from its store (folder or zip), decoded safely (:func:`prepare_image`), grouped with the images of
the same padded input size into batches (:func:`grouped`: torchvision pads a batch to its largest image, so only
those give the rows of a batch size of 1), run through the model
(:class:`explorer.detection.inference.BatchInference`, the model's lock held, CUDA out-of-memory halving the batch,
then falling back to a CPU copy), and reduced at once (:func:`reduce_image`: :mod:`explorer.model_scan.image_stats`,
:mod:`explorer.model_scan.detections`), the results put back in scan order: memory stays flat with the dataset's
size (at most two batches of decoded images wait). :mod:`explorer.model_scan.ray_engine` runs the same functions on
Ray Data. A missing or corrupt image is an error row and the scan goes on. Category ids
are the model's label ids (torchvision's references use the COCO category id as the label of its 91-class models;
the demo model's shape ids are its labels); a dataset whose categories are not the model's classes is refused
before anything runs.

Example (the sample with the demo model, four images):
    >>> from explorer import synthetic
    >>> from explorer.dataset.coco import load_coco
    >>> from explorer.dataset.image_stores import FolderImages
    >>> from explorer.detection.loading import load_demo_model
    >>> path = synthetic.sample_dataset()
    >>> acc = ModelScan.run(load_coco(path), FolderImages(path.parent / "images"), load_demo_model(), limit=4)
    >>> len(acc.images), int(acc.images["error"].eq("").sum())
    (4, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from explorer.anchors.compare import ASSIGNERS, assigner_columns, inputs_from_dense, run_assigners
from explorer.dataset.coco import AREA_MEDIUM, AREA_SMALL, CocoDataset
from explorer.dataset.image_stores import ImageStore
from explorer.detection.architectures import LoadedModel
from explorer.detection.inference import BatchInference, InferenceResult, check_image_array, padded_input_hw
from explorer.detection.view import category_mismatch
from explorer.images import decode_image
from explorer.model_scan.detections import detection_row
from explorer.model_scan.image_stats import LossSettings, consistency_columns, image_losses
from explorer.model_scan.reweight import LossBins

#: Score-IoU histogram bins per axis (the dataset-level density).
HIST_BINS = 20
#: The default score at which detections count and are confident.
SCORE_THRESH = 0.5
#: Images per forward pass on CUDA by default (halved on out-of-memory): 8 of COCO's 800x1333 inputs take a few GB
#: with ``retinanet_resnet50_fpn`` in float32.
CUDA_BATCH_SIZE = 8


@dataclass(frozen=True)
class ModelScanConfig:
    """Loss settings, the detection score, which images (``limit`` of them, drawn with ``seed``; all if None), and
    the assigners to compare on every image (:mod:`explorer.anchors.compare`; none by default: they cost time),
    and the images per forward pass (:meth:`batch_size_on`)."""

    losses: LossSettings = field(default_factory=LossSettings)
    score_thresh: float = SCORE_THRESH
    limit: int | None = None
    seed: int = 0
    assigners: tuple[str, ...] = ()
    batch_size: int | None = None

    def __post_init__(self) -> None:
        unknown = [a for a in self.assigners if a not in ASSIGNERS]
        if unknown:
            raise ValueError(f"unknown assigner(s) {', '.join(unknown)}; expected some of {', '.join(ASSIGNERS)}")
        if not 0 < self.score_thresh < 1:
            raise ValueError(f"score_thresh must be in (0, 1), got {self.score_thresh}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def batch_size_on(self, device: torch.device) -> int:
        """The batch size to run at: ``batch_size``, or by default 1 on the CPU (batching gains nothing there) and
        :data:`CUDA_BATCH_SIZE` on CUDA."""
        if self.batch_size is not None:
            return self.batch_size
        return CUDA_BATCH_SIZE if device.type == "cuda" else 1


def check_categories(ds: CocoDataset, loaded: LoadedModel) -> None:
    """``ValueError`` with the reason when the dataset's categories are not the model's classes (before a run)."""
    if len(ds.category_ids) and (why := category_mismatch(ds, ds.category_ids, loaded.class_names)):
        raise ValueError(why)


def image_order(ds: CocoDataset, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the images to scan: all in file order, or ``limit`` drawn with ``seed`` (sorted)."""
    n = ds.num_images
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@dataclass
class ImageResult:
    """One image's scan output: its row, loss bins, positives' score / IoU / class / size bucket, problems and
    detections (``image_id, category_id, x, y, w, h, score`` rows for COCOeval)."""

    row: dict
    bins: LossBins | None = None
    consistency: np.ndarray | None = None
    problems: list[dict] = field(default_factory=list)
    detections: list[dict] = field(default_factory=list)


@dataclass
class Pending:
    """An image read and decoded, waiting for the model: its place in the scan, dataset index, row so far, pixels
    ((H, W, 3) uint8; None when unreadable: ``row["error"]`` says why) and padded input size (the batch key)."""

    position: int
    index: int
    row: dict
    image: np.ndarray | None = None
    key: tuple[int, int] | None = None


def prepare_image(
    ds: CocoDataset, index: int, store: ImageStore, transform: GeneralizedRCNNTransform, position: int = 0
) -> Pending:
    """Read and decode image ``index`` (:func:`explorer.images.decode_image`'s checks) and compute its padded input
    size under the model's ``transform``; an unreadable or unusable image comes back with its ``error``, no pixels."""
    name = ds.file_names[index]
    row = {"image_id": ds.image_ids[index], "file_name": name, "error": ""}
    data = store.read(name)
    if data is None:
        return Pending(position, index, {**row, "error": f"not among the images ({store.description})"})
    try:
        image = decode_image(data)
        check_image_array(image)
        key = padded_input_hw(image.shape[0], image.shape[1], transform)
    except ValueError as err:
        return Pending(position, index, {**row, "error": str(err)})
    return Pending(position, index, row, image, key)


def scan_image(
    ds: CocoDataset, index: int, store: ImageStore, loaded: LoadedModel, config: ModelScanConfig
) -> ImageResult:
    """Read, run and reduce image ``index`` alone; an unreadable image gives a row with its ``error``."""
    pending = prepare_image(ds, index, store, loaded.model.transform)
    if pending.image is None:
        return ImageResult(pending.row)
    return reduce_image(ds, pending, BatchInference(loaded, 1)([pending.image])[0], loaded, config)


def reduce_image(
    ds: CocoDataset, pending: Pending, result: InferenceResult, loaded: LoadedModel, config: ModelScanConfig
) -> ImageResult:
    """One image's model outputs reduced to its row, loss bins, positives, problems and detections."""
    index, base, name = pending.index, pending.row, pending.row["file_name"]
    ann = ds.image_annotations(index)
    settings = replace(config.losses, box_loss=getattr(loaded.model.head.regression_head, "_loss_type", "l1"))
    losses = image_losses(result.dense, ann.boxes_xyxy, ann.category_ids, settings)
    det_row, problems = detection_row(
        result.detections, ann.boxes_xyxy, ann.category_ids, ann.crowd_xyxy, ann.crowd_category_ids,
        score_thresh=config.score_thresh,
    )  # fmt: skip
    row = {**base, "boxes": len(ann.boxes_xyxy), **losses.row, **det_row}
    row.update(consistency_columns(losses.positive_score, losses.positive_iou))
    if config.assigners:
        size_div = int(loaded.model.transform.size_divisible)
        inputs = inputs_from_dense(result.dense, ann.boxes_xyxy, ann.category_ids, size_div)
        row.update(assigner_columns(run_assigners(config.assigners, inputs)))
    gt = ann.boxes_xyxy[losses.positive_gt]
    area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    size = np.digitize(area, [AREA_SMALL, AREA_MEDIUM])
    labels = ann.category_ids[losses.positive_gt]
    consistency = np.stack([losses.positive_score, losses.positive_iou, labels, size], axis=1).astype(np.float64)
    for p in problems:
        p.update(image_id=base["image_id"], file_name=name)
    d = result.detections
    dets = [
        {"image_id": base["image_id"], "category_id": int(c), "x": float(b[0]), "y": float(b[1]),
         "w": float(b[2] - b[0]), "h": float(b[3] - b[1]), "score": float(s)}
        for b, s, c in zip(d.boxes, d.scores, d.labels, strict=True)
    ]  # fmt: skip
    return ImageResult(row, losses.bins, consistency, problems, dets)


@dataclass
class ModelScan:
    """A model scan's results: per-image rows, likely label problems, detections, and dataset-level bins and
    score-IoU histograms (per class id and size bucket: (HIST_BINS, HIST_BINS) counts, score by IoU)."""

    images: pd.DataFrame
    problems: pd.DataFrame
    detections: pd.DataFrame
    bins: LossBins
    histograms: dict[tuple[int, int], np.ndarray]

    @classmethod
    def run(
        cls,
        ds: CocoDataset,
        store: ImageStore,
        loaded: LoadedModel,
        config: ModelScanConfig | None = None,
        *,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> ModelScan:
        """Scan ``ds`` in memory (the CLI writes parts to disk instead: :mod:`explorer.model_scan.store`)."""
        cfg = config or ModelScanConfig(limit=limit)
        acc = Accumulator()
        for result in iter_scan(ds, store, loaded, cfg, progress=progress, notice=notice):
            acc.add(result)
        return acc.result()


def scan_order(ds: CocoDataset, config: ModelScanConfig, skip: set | None = None) -> list[int]:
    """Dataset indices the scan runs, in order: :func:`image_order` less the image ids in ``skip``."""
    return [int(i) for i in image_order(ds, config.limit, config.seed) if not skip or ds.image_ids[i] not in skip]


def run_group(
    ds: CocoDataset, group: list[Pending], run: BatchInference, loaded: LoadedModel, config: ModelScanConfig
) -> list[tuple[int, ImageResult]]:
    """Run images of one padded input size through the model and reduce each: ``(position, result)`` pairs."""
    outputs = run([p.image for p in group])
    return [(p.position, reduce_image(ds, p, out, loaded, config)) for p, out in zip(group, outputs, strict=True)]


def scan_pending(
    ds: CocoDataset, pending: list[Pending], run: BatchInference, loaded: LoadedModel, config: ModelScanConfig
) -> list[tuple[int, ImageResult]]:
    """Scan a list of read images at once (what a Ray actor gets): error rows as they are, the others grouped by
    padded input size and run in batches; ``(position, result)`` pairs in the order of ``pending``."""
    out = [(p.position, ImageResult(p.row)) for p in pending if p.image is None]
    groups: dict[tuple[int, int], list[Pending]] = {}
    for p in pending:
        if p.image is not None:
            groups.setdefault(p.key, []).append(p)
    for group in groups.values():
        out.extend(run_group(ds, group, run, loaded, config))
    return sorted(out, key=lambda pair: pair[0])


def grouped(pending: Iterator[Pending], run: BatchInference, max_waiting: int) -> Iterator[list[Pending]]:
    """Batches of one padded input size from a stream of read images, with at most ``max_waiting`` decoded images
    held: a group goes when it is a full batch, or, when too many wait, the group of the image waiting longest; the
    rest at the end. Unreadable images go alone at once (a list of one, no pixels)."""
    groups: dict[tuple[int, int], list[Pending]] = {}
    waiting = 0
    for p in pending:
        if p.image is None:
            yield [p]
            continue
        groups.setdefault(p.key, []).append(p)
        waiting += 1
        if len(groups[p.key]) >= run.batch_size:
            key = p.key
        elif waiting >= max_waiting:
            key = min(groups, key=lambda k: groups[k][0].position)
        else:
            continue
        waiting -= len(groups[key])
        yield groups.pop(key)
    yield from sorted(groups.values(), key=lambda g: g[0].position)


def in_order(pairs: Iterator[tuple[int, ImageResult]]) -> Iterator[ImageResult]:
    """Results in scan order from ``(position, result)`` pairs that come out of order (positions 0, 1, ...)."""
    held: dict[int, ImageResult] = {}
    next_position = 0
    for position, result in pairs:
        held[position] = result
        while next_position in held:
            yield held.pop(next_position)
            next_position += 1
    if held:
        raise ValueError(f"scan results missing before position {min(held)}")


def iter_scan(
    ds: CocoDataset,
    store: ImageStore,
    loaded: LoadedModel,
    config: ModelScanConfig,
    *,
    skip: set | None = None,
    progress: Callable[[int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Iterator[ImageResult]:
    """Scan (after the category check), skipping the image ids in ``skip``; results come in scan order.

    Images are read and decoded one by one, grouped by padded input size (:func:`grouped`: at most two batches of
    decoded images wait) and run ``config.batch_size_on(device)`` at a time (:class:`BatchInference`; CUDA
    out-of-memory events go to ``notice``, one line each). The rows equal those of a batch size of 1.
    """
    check_categories(ds, loaded)
    order = scan_order(ds, config, skip)
    run = BatchInference(loaded, config.batch_size_on(loaded.device), notice=notice)
    transform = loaded.model.transform
    pending = (prepare_image(ds, index, store, transform, position) for position, index in enumerate(order))

    def pairs() -> Iterator[tuple[int, ImageResult]]:
        for group in grouped(pending, run, max_waiting=2 * run.batch_size):
            if group[0].image is None:
                yield group[0].position, ImageResult(group[0].row)
            else:
                yield from run_group(ds, group, run, loaded, config)

    for done, result in enumerate(in_order(pairs()), start=1):
        yield result
        if progress is not None:
            progress(done, len(order))


class Accumulator:
    """Adds image results up into a :class:`ModelScan` (rows, problems, detections, bins, histograms)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.problems: list[dict] = []
        self.detections: list[dict] = []
        self.bins = LossBins.zeros()
        self.histograms: dict[tuple[int, int], np.ndarray] = {}

    def add(self, result: ImageResult) -> None:
        self.rows.append(result.row)
        self.problems.extend(result.problems)
        self.detections.extend(result.detections)
        if result.bins is not None:
            self.bins += result.bins
        if result.consistency is not None:
            add_histograms(self.histograms, result.consistency)

    def result(self) -> ModelScan:
        return ModelScan(
            pd.DataFrame(self.rows),
            pd.DataFrame(self.problems, columns=PROBLEM_COLUMNS),
            pd.DataFrame(self.detections, columns=["image_id", "category_id", "x", "y", "w", "h", "score"]),
            self.bins,
            self.histograms,
        )


PROBLEM_COLUMNS = ["image_id", "file_name", "kind", "x1", "y1", "x2", "y2", "label", "other_label", "score", "iou"]


def add_histograms(histograms: dict[tuple[int, int], np.ndarray], consistency: np.ndarray) -> None:
    """Add positives' (score, IoU, class id, size bucket) rows into per (class, size) score-by-IoU counts."""
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    for (cls_id, size), rows in pd.DataFrame(consistency).groupby([2, 3]):
        counts, _, _ = np.histogram2d(rows[0].clip(0, 1), rows[1].clip(0, 1), bins=[edges, edges])
        key = (int(cls_id), int(size))
        histograms[key] = histograms.get(key, np.zeros((HIST_BINS, HIST_BINS))) + counts
