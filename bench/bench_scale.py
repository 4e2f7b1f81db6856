"""Benchmark of loading (and scanning) at scale: FocalScope's reader against pycocotools on the same big files.

Each measurement runs in a fresh subprocess, so its peak memory (max RSS) is its own:

- ``load``: :func:`explorer.dataset.coco.load_coco` (the columnar reader; files of 1 GB or more are read in
  blocks), time and peak RSS;
- ``scan``: load, then :func:`explorer.dataset.scan.scan_dataset` on the first ``--scan-images`` images (all by
  default; the per-box table streamed to Parquet beyond 5 M boxes, as the CLI and the page do), time and peak RSS
  of the whole;
- ``pycocotools``: ``pycocotools.coco.COCO(path)`` (json.load + its indexes), the reference reader, under an
  address-space limit (``--pycocotools-limit-gb``, 8 by default: the machine is shared) so that a file it cannot
  hold stops it with a MemoryError instead of swapping; the time and peak RSS where it stopped are reported.

Files: ``--file coco`` is the COCO-train-scale file of ``bench/make_big_coco.py`` (118,000 images, 448 MB),
``--file o365`` the Objects365-scale one (``make_big_coco.py --objects365``: 1.7 M images, 25 M boxes, no
segmentation, 3.7 GB); both are generated on first use under ``bench/out/`` (delete them afterwards).

Usage: ``python bench/bench_scale.py --file o365 [--only load scan pycocotools] [--scan-images N]``; results are
printed and written to ``bench/out/bench_scale_<file>.json``.
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

from make_big_coco import OUT_DIR, VERSION, cached_big_coco, write_objects365_scale  # noqa: E402

MODES = ("load", "scan", "pycocotools")


def big_file(kind: str) -> Path:
    """The cached benchmark file of ``kind`` ("coco" or "o365"), generated on first use."""
    if kind == "coco":
        return cached_big_coco(118_000, 0)
    path = OUT_DIR / f"o365_scale_v{VERSION}_1700000_0.json"
    if not path.exists():
        write_objects365_scale(path, 1_700_000, 0)
    return path


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(mode: str, path: str, scan_images: int) -> dict:
    t0 = time.perf_counter()
    if mode == "pycocotools":
        from pycocotools.coco import COCO

        try:
            coco = COCO(path)
        except MemoryError:
            return {"seconds": time.perf_counter() - t0, "maxrss_mb": _maxrss_mb(), "stopped": "MemoryError"}
        return {"seconds": time.perf_counter() - t0, "maxrss_mb": _maxrss_mb(), "annotations": len(coco.anns)}
    from explorer.dataset.coco import load_coco

    ds = load_coco(path)
    out = {"load_s": time.perf_counter() - t0, "images": ds.num_images, "annotations": ds.num_annotations}
    if mode == "scan":
        from explorer.anchors.fit import subset
        from explorer.dataset.scan import STREAM_BOXES_MIN, scan_dataset

        if 0 < scan_images < ds.num_images:
            ds = subset(ds, range(scan_images))
        boxes_to = OUT_DIR / "bench_scale_boxes.parquet" if ds.num_annotations > STREAM_BOXES_MIN else None
        t1 = time.perf_counter()
        res = scan_dataset(ds, device="cpu", boxes_to=boxes_to)
        out.update(scan_s=time.perf_counter() - t1, scanned_images=ds.num_images, boxes=int(res.summary()["boxes"]))
        if boxes_to is not None:
            out["boxes_parquet_mb"] = boxes_to.stat().st_size / 1e6
            boxes_to.unlink()
    out["maxrss_mb"] = _maxrss_mb()
    return out


def _limit_address_space(gb: float):
    def apply() -> None:
        limit = int(gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", choices=("coco", "o365"), default="o365")
    parser.add_argument("--only", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--scan-images", type=int, default=0, help="scan only the first N images (0: all)")
    parser.add_argument("--pycocotools-limit-gb", type=float, default=8.0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, path, n = args.child
        print(json.dumps(_child(mode, path, int(n))))
        return 0
    path = big_file(args.file)
    size_mb = path.stat().st_size / 1e6
    print(f"annotation file: {path} ({size_mb:,.0f} MB)")
    rows = {}
    for mode in args.only:
        load = os.getloadavg()[0]
        limit = _limit_address_space(args.pycocotools_limit_gb) if mode == "pycocotools" else None
        cmd = [sys.executable, __file__, "--child", mode, str(path), str(args.scan_images)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, preexec_fn=limit)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
            rows[mode] = {"failed": tail[0], "load_avg_1min_before": load}
            print(f"{mode:12s} failed: {tail[0]}")
            continue
        rows[mode] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_avg_1min_before": load}
        print(f"{mode:12s} {json.dumps(rows[mode])}")
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "file": str(path.name),
        "file_mb": size_mb,
        "pycocotools_limit_gb": args.pycocotools_limit_gb,
        **rows,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"bench_scale_{args.file}.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
