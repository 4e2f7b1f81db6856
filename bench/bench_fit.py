"""Benchmark of the anchor fit on the built-in sample dataset, with torchvision's own loop as the reference.

One run reports:

- the fit (``explorer.anchors.fit.fit_anchors``, head mode) on the sample (200 images): seconds, scans, whether
  the budget cut the search, the winner and every finalist's primary (boxes with a positive at IoU >= 0.5, no
  low-quality rescue), median and 10th-percentile positives per box on all images, and the bootstrap interval;
- the cost of one candidate evaluation: the scan of all images against torchvision's per-image loop
  (``GeneralizedRCNNTransform`` + ``AnchorGenerator`` + ``box_iou`` + ``Matcher``, ``explorer/dataset/
  scan_reference.py``) on ``--ref-images`` images, and the check that the fitted winner's primary is the same
  counted by torchvision on those images.

``--dataset PATH`` runs it on another dataset (any format; e.g. the COCO-val-scale and COCO-train-scale files of
``bench/make_big_coco.py --images 5000`` / ``118000``) and reports the load and the whole time (load + fit), the
figure the issue's targets are about (COCO-val scale under 2 minutes, COCO-train scale under 10 on 2 cores).

Usage: ``python bench/bench_fit.py [--dataset PATH] [--budget-s 60] [--subset 100] [--ref-images 20]
[--mode head|free] [--out NAME.json]``; results are printed and written to ``bench/out/`` (default
``bench_fit.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from explorer.dataset.coco import CocoDataset
    from explorer.dataset.scan_config import ScanConfig


def _reference(path: Path, ds: CocoDataset, scan: ScanConfig, n: int) -> tuple[float, int, int]:
    """torchvision's loop on the first ``n`` images: seconds, boxes covered (no low-quality rescue), boxes."""
    from pycocotools.coco import COCO

    from explorer.dataset.scan_reference import TorchvisionReference

    a = scan.anchors
    ref = TorchvisionReference(
        COCO(str(path)), sizes=a.sizes, aspect_ratios=a.aspect_ratios, strides=a.strides, min_size=a.min_size,
        max_size=a.max_size, pos_thresh=scan.pos_thresh, neg_thresh=scan.neg_thresh, low_quality=scan.low_quality,
    )  # fmt: skip
    t0 = time.perf_counter()
    covered = boxes = 0
    for image_id in ds.image_ids[:n]:
        r = ref.image_stats(image_id.item())
        covered += int(((r["box_pos"] > 0) & ~r["box_lq_only"]).sum())
        boxes += len(r["box_pos"])
    return time.perf_counter() - t0, covered, boxes


def main() -> None:
    from explorer import synthetic
    from explorer.anchors.fit import covered_mask, evaluate, fit_anchors, subset
    from explorer.dataset.formats import load_dataset
    from explorer.dataset.scan_config import ScanConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=60.0)
    parser.add_argument("--subset", type=int, default=100)
    parser.add_argument("--ref-images", type=int, default=20)
    parser.add_argument("--mode", choices=("head", "free"), default="head")
    parser.add_argument("--dataset", type=Path, default=None, help="default: the built-in sample")
    parser.add_argument("--out", default="bench_fit.json")
    args = parser.parse_args()

    path = args.dataset or synthetic.sample_dataset()
    t_start = time.perf_counter()
    ds = load_dataset(path)
    load_s = time.perf_counter() - t_start
    scan = ScanConfig()
    fit = fit_anchors(ds, scan, mode=args.mode, budget_s=args.budget_s, subset_images=args.subset, seed=0)
    total_s = time.perf_counter() - t_start
    t0 = time.perf_counter()
    evaluate(ds, fit.winner.config, scan)
    scan_s = time.perf_counter() - t0
    winner_scan = dataclasses.replace(scan, anchors=fit.winner.config)
    n_ref = min(args.ref_images, ds.num_images)
    ref_s, ref_cov, ref_boxes = _reference(path, ds, winner_scan, n_ref) if n_ref else (math.nan, 0, 0)
    head = evaluate(subset(ds, list(range(n_ref))), fit.winner.config, scan)[1]
    ours_cov = int(covered_mask(head).sum())
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "dataset": str(path.name),
        "images": ds.num_images,
        "load_seconds": round(load_s, 2),
        "load_plus_fit_seconds": round(total_s, 2),
        "boxes": int(fit.winner.full.boxes),
        "mode": fit.mode,
        "fit_seconds": round(fit.seconds, 2),
        "scans": fit.evaluations,
        "stopped_by_budget": fit.stopped_by_budget,
        "winner": fit.winner.name,
        "winner_sizes": [list(s) for s in fit.winner.config.sizes],
        "winner_ratios": list(fit.winner.config.aspect_ratios),
        "ci95_subset": [round(v, 4) for v in fit.ci],
        "finalists": {c.name: [round(c.full.covered, 4), c.full.median_pos, c.full.p10_pos] for c in fit.candidates},
        "scan_all_images_s": round(scan_s, 3),
        "torchvision_loop_s_per_image": round(ref_s / max(n_ref, 1), 4),
        "scan_s_per_image": round(scan_s / ds.num_images, 5),
        "reference_images": n_ref,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "covered_scan_vs_torchvision": [ours_cov, ref_cov, ref_boxes],
    }
    assert ours_cov == ref_cov, f"scan {ours_cov} != torchvision {ref_cov}"
    print(json.dumps(out, indent=2))
    folder = ROOT / "bench" / "out"
    folder.mkdir(exist_ok=True)
    (folder / args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
