"""Benchmark of the dataset scan on a COCO-train-scale file, against torchvision's own per-image loop.

One run reports:

- the load time of the 118,000-image, ~450 MB annotation file (``explorer.dataset.coco.load_coco``),
- the scan's images per second over the whole file (``explorer.dataset.scan.scan_dataset``) and load + scan in total,
- the peak memory (max RSS) of that load + scan, measured in a fresh subprocess so nothing else is counted,
- torchvision's loop (``GeneralizedRCNNTransform`` + ``AnchorGenerator`` + ``box_iou`` + ``Matcher``, see
  ``explorer/dataset/scan_reference.py``) in images per second on a subset with the same distribution, and the
  check that the scan's counts equal torchvision's on that subset.

Targets on the 2-core development machine: >= 2,000 images/s, load + scan < 90 s, peak memory < 4 GB.

Usage: ``python bench/bench_scan.py [--images 118000] [--ref-images 150] [--device auto|cpu|cuda]
[--no-reference]``; results are printed and written to ``bench/out/bench_scan.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_big_coco import OUT_DIR, cached_big_coco, write_big_coco  # noqa: E402


def _child(path: str, device: str, workers: int | None) -> None:
    """Load + scan in this (fresh) process and print one JSON line."""
    from explorer.dataset.coco import load_coco
    from explorer.dataset.scan import scan_dataset

    gpu_name = ""
    if device == "cuda":
        import torch

        torch.zeros(1, device="cuda")  # create the CUDA context outside the timing
        gpu_name = torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    ds = load_coco(path)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = scan_dataset(ds, device=device, workers=workers)
    t_scan = time.perf_counter() - t1
    s = res.summary()
    print(
        json.dumps(
            {
                "images": ds.num_images,
                "boxes": int(s["boxes"]),
                "crowd": int(s["crowd_boxes"]),
                "load_s": t_load,
                "scan_s": t_scan,
                "total_s": t_load + t_scan,
                "images_per_s": ds.num_images / t_scan,
                "path": res.path,
                "gpu": gpu_name,
                "reference_images": res.reference_images,
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "positives": int(s["positives"]),
                "hard_negative_share": s["hard_negative_share"],
            }
        )
    )


def _reference(n_images: int, seed: int, device: str) -> dict:
    """torchvision's loop on a fresh file of n_images (same generator), and the scan's agreement with it."""
    from pycocotools.coco import COCO

    from explorer.dataset.coco import load_coco
    from explorer.dataset.scan import scan_dataset
    from explorer.dataset.scan_reference import TorchvisionReference

    path = OUT_DIR / f"bench_ref_{n_images}_{seed}.json"
    if not path.exists():
        write_big_coco(path, n_images, seed)
    coco = COCO(str(path))
    ref = TorchvisionReference(coco)
    ds = load_coco(path)
    res = scan_dataset(ds, device=device)
    ids = ds.image_ids.tolist()
    ref.image_stats(ids[0])  # warm-up
    t0 = time.perf_counter()
    stats = ref.run(ids)
    dt = time.perf_counter() - t0
    im = res.images
    mismatches = 0
    for i, r in enumerate(stats):
        row = im.iloc[i]
        if (row.positives, row.ignored, row.hard_negatives, row.easy_negatives) != (
            r["positives"],
            r["ignored"],
            r["hard"],
            r["easy"],
        ):
            mismatches += 1
    return {"ref_images": len(ids), "ref_s": dt, "ref_images_per_s": len(ids) / dt, "ref_mismatches": mismatches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-images", type=int, default=150)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-reference", action="store_true", help="skip torchvision's loop (no pycocotools)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.device, args.workers)
        return 0
    t0 = time.perf_counter()
    existed = (OUT_DIR / f"coco_scale_v1_{args.images}_{args.seed}.json").exists()
    path = cached_big_coco(args.images, args.seed)
    gen_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6
    print(f"annotation file: {path} ({size_mb:.0f} MB, {'cached' if existed else f'generated in {gen_s:.1f} s'})")
    cmd = [sys.executable, __file__, "--child", str(path), "--device", args.device]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    full = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1min": os.getloadavg()[0],
        "file_mb": size_mb,
        **full,
    }
    if not args.no_reference:
        out.update(_reference(args.ref_images, args.seed + 1, "cpu" if args.device == "auto" else args.device))
        out["speedup_vs_torchvision"] = out["images_per_s"] / out["ref_images_per_s"]
    rows = [
        ("images / boxes / crowd", f"{out['images']:,} / {out['boxes']:,} / {out['crowd']:,}"),
        ("load (s)", f"{out['load_s']:.1f}"),
        (f"scan (s), path {out['path']}", f"{out['scan_s']:.1f}"),
        ("load + scan (s)  [target < 90]", f"{out['total_s']:.1f}"),
        ("scan images/s    [target >= 2000]", f"{out['images_per_s']:,.0f}"),
        ("peak memory MB   [target < 4096]", f"{out['maxrss_mb']:,.0f}"),
    ]
    if "ref_images_per_s" in out:
        rows += [
            (f"torchvision loop images/s ({out['ref_images']} images)", f"{out['ref_images_per_s']:.1f}"),
            ("speed-up over torchvision", f"{out['speedup_vs_torchvision']:,.0f}x"),
            ("images whose counts differ from torchvision", f"{out['ref_mismatches']}"),
        ]
    rows.append(("1-min load average during the run", f"{out['load_avg_1min']:.1f}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "bench_scan.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
