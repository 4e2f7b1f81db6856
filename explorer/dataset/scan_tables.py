"""The result tables of a dataset scan, built from its counts: per image, per box (kept in memory or streamed to a
Parquet file slice by slice), per level. :func:`explorer.dataset.scan.scan_dataset` calls them last; the
column meanings are those of :class:`explorer.dataset.scan_result.ScanResult`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from explorer.dataset.coco import SIZE_BUCKETS, CocoDataset
from explorer.dataset.scan_geometry import Geometry

#: Rows of the per-box table per Parquet write when it is streamed (:func:`scan_dataset` ``boxes_to``): a slice
#: is held three times (columns, pandas, Arrow), about 0.1 GB at this size.
BOX_SLICE_ROWS = 250_000


def write_boxes(
    path: str | os.PathLike, ds: CocoDataset, m: Any, counts: Any, bucket: np.ndarray,
) -> None:  # fmt: skip
    """The per-box table written to a Parquet file slice by slice (one slice in memory at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for start in range(0, max(len(m.rows), 1), BOX_SLICE_ROWS):
            sel = np.arange(start, min(len(m.rows), start + BOX_SLICE_ROWS))
            table = pa.Table.from_pandas(boxes_table(ds, m, counts, bucket, sel), preserve_index=False)
            if writer is None:  # dictionary pages only where values repeat: twice as fast, the same size
                writer = pq.ParquetWriter(str(path), table.schema, use_dictionary=["size", "category_id"])
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def images_table(ds: CocoDataset, geo: Geometry, m: Any, counts: Any, bucket: np.ndarray) -> pd.DataFrame:
    """One row per image: :data:`explorer.dataset.scan_result.IMAGE_COLUMNS`, then ``pos_P{level}``."""
    n = ds.num_images
    res = counts.per_image
    m_img, K_all = m.image, m.per_image
    sizes = np.bincount(m_img * 3 + bucket, minlength=3 * n).reshape(n, 3)
    crowd = np.bincount(ds.ann_image[ds.iscrowd], minlength=n)
    no_pos = counts.box_pos == 0
    negatives = res["hard"] + res["easy"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(negatives > 0, res["positives"] / np.maximum(negatives, 1), np.nan)
        mean_pos = np.where(K_all > 0, res["positives"] / np.maximum(K_all, 1), np.nan)
    images = pd.DataFrame(
        {
            "image_id": ds.image_ids,
            "file_name": ds.file_names,
            "height": ds.heights,
            "width": ds.widths,
            "input_height": geo.input_h,
            "input_width": geo.input_w,
            "boxes": K_all,
            "crowd_boxes": crowd,
            "small": sizes[:, 0],
            "medium": sizes[:, 1],
            "large": sizes[:, 2],
            "anchors": geo.level_start[:, -1] if n else np.zeros(0, np.int64),
            "positives": res["positives"],
            "ignored": res["ignored"],
            "hard_negatives": res["hard"],
            "easy_negatives": res["easy"],
            "pos_neg_ratio": ratio,
            "boxes_no_positive": np.bincount(m_img[no_pos], minlength=n),
            "boxes_low_quality_only": np.bincount(m_img[counts.box_lq], minlength=n),
            "mean_pos_per_box": mean_pos,
        }
    )
    for li, level in enumerate(geo.level_numbers):
        images[f"pos_P{level}"] = res["level_pos"][:, li]
    return images


def boxes_table(
    ds: CocoDataset, m: Any, counts: Any, bucket: np.ndarray, sel: np.ndarray | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One row per matched (non-crowd) box (those at positions ``sel`` of the matched boxes, default all): ids,
    category, size, original and input-scale geometry, counts."""
    n = ds.num_images
    sel = slice(None) if sel is None else sel
    m_rows, m_img, bucket = m.rows[sel], m.image[sel], bucket[sel]
    box_pos, box_best, box_lq = counts.box_pos[sel], counts.box_best[sel], counts.box_lq[sel]
    no_pos = box_pos == 0
    b = m.input_boxes(sel)
    ob = ds.boxes_xyxy[m_rows].astype(np.float64)
    w_img = ds.widths[m_img].astype(np.float64)
    h_img = ds.heights[m_img].astype(np.float64)
    return pd.DataFrame(
        {
            "image_index": m_img,
            "ann_row": m_rows,
            "annotation_id": ds.ann_ids[m_rows],
            "image_id": ds.image_ids[m_img] if n else ds.image_ids[:0],
            "category_id": ds.ann_category[m_rows],
            "size": pd.Categorical.from_codes(bucket, categories=list(SIZE_BUCKETS)),
            "area": ds.areas[m_rows],
            "width": ob[:, 2] - ob[:, 0],
            "height": ob[:, 3] - ob[:, 1],
            "cx_rel": (ob[:, 0] + ob[:, 2]) / 2 / np.maximum(w_img, 1),
            "cy_rel": (ob[:, 1] + ob[:, 3]) / 2 / np.maximum(h_img, 1),
            "x1": b[:, 0],
            "y1": b[:, 1],
            "x2": b[:, 2],
            "y2": b[:, 3],
            "num_positive": box_pos,
            "best_iou": box_best,
            "low_quality_only": box_lq,
            "no_positive": no_pos,
        }
    )


def levels_table(geo: Geometry, res: dict[str, np.ndarray], n: int) -> pd.DataFrame:
    """One row per pyramid level: anchors and the label counts summed over the images."""
    return pd.DataFrame(
        {
            "level": [f"P{lv}" for lv in geo.level_numbers],
            "anchors": np.diff(geo.level_start, axis=1).sum(axis=0) if n else np.zeros(geo.num_levels, np.int64),
            "positives": res["level_pos"].sum(axis=0),
            "ignored": res["level_ign"].sum(axis=0),
            "hard_negatives": res["level_hard"].sum(axis=0),
            "easy_negatives": res["level_easy"].sum(axis=0),
        }
    )
