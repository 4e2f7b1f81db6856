"""The model scan's driver: a detector over every image of a dataset, one row of statistics per image.

Each image is read from its store (folder or zip), decoded safely, run through the model
(:func:`explorer.detection.inference.run_inference`, the model's lock held, CUDA out-of-memory falling back to a CPU
copy), and reduced at once (:mod:`explorer.model_scan.image_stats`, :mod:`explorer.model_scan.detections`): memory
stays flat with the dataset's size. A missing or corrupt image is an error row and the scan goes on. Category ids
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

from explorer.anchors.compare import ASSIGNERS, assigner_columns, inputs_from_dense, run_assigners
from explorer.dataset.coco import AREA_MEDIUM, AREA_SMALL, CocoDataset
from explorer.dataset.image_stores import ImageStore
from explorer.detection.architectures import LoadedModel
from explorer.detection.inference import run_inference
from explorer.detection.view import category_mismatch
from explorer.images import decode_image
from explorer.model_scan.detections import detection_row
from explorer.model_scan.image_stats import LossSettings, consistency_columns, image_losses
from explorer.model_scan.reweight import LossBins

#: Score-IoU histogram bins per axis (the dataset-level density).
HIST_BINS = 20
#: The default score at which detections count and are confident.
SCORE_THRESH = 0.5


@dataclass(frozen=True)
class ModelScanConfig:
    """Loss settings, the detection score, which images (``limit`` of them, drawn with ``seed``; all if None), and
    the assigners to compare on every image (:mod:`explorer.anchors.compare`; none by default: they cost time)."""

    losses: LossSettings = field(default_factory=LossSettings)
    score_thresh: float = SCORE_THRESH
    limit: int | None = None
    seed: int = 0
    assigners: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [a for a in self.assigners if a not in ASSIGNERS]
        if unknown:
            raise ValueError(f"unknown assigner(s) {', '.join(unknown)}; expected some of {', '.join(ASSIGNERS)}")
        if not 0 < self.score_thresh < 1:
            raise ValueError(f"score_thresh must be in (0, 1), got {self.score_thresh}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


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


def scan_image(
    ds: CocoDataset, index: int, store: ImageStore, loaded: LoadedModel, config: ModelScanConfig
) -> ImageResult:
    """Read, run and reduce image ``index``; an unreadable image gives a row with its ``error``."""
    name = ds.file_names[index]
    base = {"image_id": ds.image_ids[index], "file_name": name, "error": ""}
    data = store.read(name)
    if data is None:
        return ImageResult({**base, "error": f"not among the images ({store.description})"})
    try:
        image = decode_image(data)
        result = run_inference(loaded, image)
    except ValueError as err:
        return ImageResult({**base, "error": str(err)})
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
    ) -> ModelScan:
        """Scan ``ds`` in memory (the CLI writes parts to disk instead: :mod:`explorer.model_scan.store`)."""
        cfg = config or ModelScanConfig(limit=limit)
        acc = Accumulator()
        for result in iter_scan(ds, store, loaded, cfg, progress=progress):
            acc.add(result)
        return acc.result()


def iter_scan(
    ds: CocoDataset,
    store: ImageStore,
    loaded: LoadedModel,
    config: ModelScanConfig,
    *,
    skip: set | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[ImageResult]:
    """Scan image by image (after the category check), skipping the image ids in ``skip``."""
    check_categories(ds, loaded)
    order = [i for i in image_order(ds, config.limit, config.seed) if not skip or ds.image_ids[i] not in skip]
    for done, index in enumerate(order, start=1):
        yield scan_image(ds, int(index), store, loaded, config)
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
