"""On a CUDA machine: the scan's torch path equals its CPU path (the compiled kernel), image by image, on the
first N images.

Usage: ``python bench/gpu_check_scan.py [--images 3000] [--file bench/out/coco_scale_v1_118000_0.json]``;
prints one JSON line (images compared, mismatching rows, timings of both paths on those images).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explorer.dataset.coco import CocoDataset, load_coco  # noqa: E402
from explorer.dataset.scan import scan_dataset  # noqa: E402


def head(ds: CocoDataset, n: int) -> CocoDataset:
    """The first n images of a dataset and their annotations."""
    sub = copy.copy(ds)
    e = int(ds.ann_offsets[n])
    sub.image_ids, sub.heights, sub.widths = ds.image_ids[:n], ds.heights[:n], ds.widths[:n]
    sub.file_names = ds.file_names[:n]
    for k in ("ann_ids", "ann_image", "ann_category", "boxes_xyxy", "areas", "iscrowd"):
        setattr(sub, k, getattr(ds, k)[:e])
    sub.ann_offsets = ds.ann_offsets[: n + 1]
    return sub


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--file", default=str(ROOT / "bench" / "out" / "coco_scale_v1_118000_0.json"))
    args = parser.parse_args()
    ds = head(load_coco(args.file), args.images)
    import torch

    torch.zeros(1, device="cuda")  # CUDA context outside the timing
    t0 = time.perf_counter()
    gpu = scan_dataset(ds, device="cuda")
    torch.cuda.synchronize()
    t_gpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    cpu = scan_dataset(ds, device="cpu")
    t_cpu = time.perf_counter() - t0
    cols = [c for c in cpu.images.columns if c not in ("pos_neg_ratio", "mean_pos_per_box")]
    bad_images = int((cpu.images[cols] != gpu.images[cols]).any(axis=1).sum())
    bcols = ["num_positive", "best_iou", "low_quality_only", "no_positive"]
    bad_boxes = int((cpu.boxes[bcols] != gpu.boxes[bcols]).any(axis=1).sum())
    print(
        json.dumps(
            {
                "images": ds.num_images,
                "boxes": len(cpu.boxes),
                "mismatching_images": bad_images,
                "mismatching_boxes": bad_boxes,
                "gpu_s": t_gpu,
                "cpu_s": t_cpu,
                "gpu_path": gpu.path,
                "device": torch.cuda.get_device_name(0),
                "torch": torch.__version__,
            }
        )
    )
    return 0 if bad_images == 0 and bad_boxes == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
