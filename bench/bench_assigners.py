"""Benchmark: every assigner on one 800x1066 input with 100 GT boxes (BENCHMARKS.md, "Assigners side by side").

Run: ``python bench/bench_assigners.py [--repeats 5] [--gt 100] [--classes 80] [--reference]``

The anchors are torchvision RetinaNet's (:func:`explorer.anchors.grid.generate_anchors`, 9 per location, 163,206 at
800x1066); the prediction-aware assigners get seeded random class probabilities and predicted boxes (each anchor
moved and rescaled at random). Every call is the public function with the anchor grid (the anchors' sparse IoU
included), timed as the median of ``--repeats`` runs after one warm-up.

``--reference`` (in the throwaway environment of ``bench/goldens/make_assigner_goldens.py``, which has mmdet 3.3.0
and Ultralytics 8.4.190) also times mmdet's ``TaskAlignedAssigner`` and ``SimOTAAssigner`` and Ultralytics'
``TaskAlignedAssigner`` on the same inputs and checks that the matched GT of every anchor is the same.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.anchors.atss import assign_atss  # noqa: E402
from explorer.anchors.grid import AnchorConfig, generate_anchors, level_grids  # noqa: E402
from explorer.anchors.max_iou import assign_max_iou  # noqa: E402
from explorer.anchors.simota import assign_simota, prior_strides  # noqa: E402
from explorer.anchors.tal import assign_tal_mmdet, assign_tal_ultralytics  # noqa: E402
from explorer.boxes import box_centres  # noqa: E402

HEIGHT, WIDTH = 800, 1066


def make_inputs(m: int, c: int, seed: int = 0) -> dict[str, Any]:
    """Anchors, grids, levels, strides; m COCO-like GT boxes (8..500 px, aspect 0.5..2); (N, c) scores; decoded."""
    rng = np.random.default_rng(seed)
    cfg = AnchorConfig()
    anchors, levels = generate_anchors(HEIGHT, WIDTH, cfg)
    grids = level_grids(HEIGHT, WIDTH, cfg)
    s = np.exp(rng.uniform(np.log(8), np.log(500), m))
    ar = np.exp(rng.uniform(-0.7, 0.7, m))
    w, h = s / np.sqrt(ar), s * np.sqrt(ar)
    cx, cy = rng.uniform(0, WIDTH, m), rng.uniform(0, HEIGHT, m)
    gt = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).clip(0, [WIDTH, HEIGHT] * 2)
    n = len(anchors)
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    pcx = (anchors[:, 0] + anchors[:, 2]) / 2 + rng.normal(0, 0.1, n) * aw
    pcy = (anchors[:, 1] + anchors[:, 3]) / 2 + rng.normal(0, 0.1, n) * ah
    pw, ph = aw * np.exp(rng.normal(0, 0.2, n)), ah * np.exp(rng.normal(0, 0.2, n))
    return {
        "anchors": anchors,
        "levels": levels,
        "grids": grids,
        "strides": prior_strides(grids),
        "gt": gt.astype(np.float32),
        "labels": rng.integers(0, c, m).astype(np.int64),
        "scores": (1 / (1 + np.exp(-rng.normal(-4, 2, (n, c))))).astype(np.float32),
        "decoded": np.stack([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], axis=1).astype(np.float32),
    }


def ours(x: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    pred = (x["anchors"], x["gt"], x["labels"], x["scores"], x["decoded"])
    kw = {"levels": x["levels"], "grids": x["grids"]}
    return {
        "max-IoU (torchvision)": lambda: assign_max_iou(x["anchors"], x["gt"], **kw),
        "ATSS (mmdet)": lambda: assign_atss(x["anchors"], x["gt"], x["levels"], grids=x["grids"]),
        "TAL (mmdet / TOOD)": lambda: assign_tal_mmdet(*pred, **kw),
        "TAL (Ultralytics)": lambda: assign_tal_ultralytics(*pred, **kw),
        "SimOTA (mmdet)": lambda: assign_simota(*pred, strides=x["strides"], **kw),
    }


def references(x: dict[str, Any]) -> dict[str, Callable[[], np.ndarray]]:
    """The reference assigners on the same inputs, each returning (N,) matched GT (-1 = negative)."""
    sys.path.insert(0, str(ROOT / "bench" / "goldens"))
    from make_assigner_goldens import _stub_mmcv_ops

    _stub_mmcv_ops()
    from mmdet.models.task_modules.assigners import SimOTAAssigner, TaskAlignedAssigner
    from mmengine.structures import InstanceData
    from ultralytics.utils.tal import TaskAlignedAssigner as UltralyticsTAL

    a, d, s = torch.from_numpy(x["anchors"]), torch.from_numpy(x["decoded"]), torch.from_numpy(x["scores"])
    g, lab = torch.from_numpy(x["gt"]), torch.from_numpy(x["labels"])
    gt = InstanceData(bboxes=g, labels=lab)
    priors = torch.from_numpy(np.concatenate([box_centres(x["anchors"]), x["strides"]], axis=1))
    tood, simota = TaskAlignedAssigner(topk=13), SimOTAAssigner()
    ultra = UltralyticsTAL(topk=10, num_classes=s.shape[1], alpha=0.5, beta=6.0, stride=[8, 16, 32, 64, 128])
    points = torch.from_numpy(box_centres(x["anchors"]))

    def run_tood() -> np.ndarray:
        return tood.assign(InstanceData(priors=a, bboxes=d, scores=s), gt, alpha=1, beta=6).gt_inds.numpy() - 1

    def run_ultra() -> np.ndarray:
        gb = g[None]
        out = ultra(s[None], d[None], points, lab.float().view(1, -1, 1), gb, gb.sum(2, keepdim=True).gt_(0.0))
        return np.where(out[3][0].numpy(), out[4][0].numpy(), -1)

    def run_simota() -> np.ndarray:
        return simota.assign(InstanceData(priors=priors, bboxes=d, scores=s), gt).gt_inds.numpy() - 1

    return {"TAL (mmdet / TOOD)": run_tood, "TAL (Ultralytics)": run_ultra, "SimOTA (mmdet)": run_simota}


def timeit(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median ms over ``repeats`` calls after a warm-up, the warm-up's result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gt", type=int, default=100)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--reference", action="store_true", help="also time the reference code (throwaway env)")
    args = parser.parse_args()
    x = make_inputs(args.gt, args.classes)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{HEIGHT}x{WIDTH}: {len(x['anchors']):,} anchors, {len(x['gt'])} GT boxes, {args.classes} classes")
    refs = references(x) if args.reference else {}
    print(f"{'assigner':24s} {'ours ms':>9s} {'positives':>9s}" + ("  reference ms  ratio  same labels" * bool(refs)))
    for name, fn in ours(x).items():
        ms, res = timeit(fn, args.repeats)
        line = f"{name:24s} {ms:9.0f} {int(res.num_positive.sum()):9d}"
        if name in refs:
            ref_ms, ref_matched = timeit(refs[name], args.repeats)
            same = np.array_equal(ref_matched, res.matched_gt)
            line += f"  {ref_ms:12.0f}  {ref_ms / ms:5.2f}  {same}"
        print(line)


if __name__ == "__main__":
    main()
