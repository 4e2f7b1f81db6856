"""Benchmark of the JSON parsers for the COCO reader, on the COCO-train-scale file: time and peak memory of each.

Each parser runs in a fresh subprocess (so its peak RSS is its own) on the same bytes, and reports the time from
bytes in memory to the annotation columns (ids, image ids, category ids, boxes, crowd flags, areas) as numpy arrays:

- ``json``: the standard library on the whole file (a dict per record, polygons included);
- ``json-lean``: the standard library after cutting the polygon segmentations out of the bytes with a regular
  expression (:func:`explorer.dataset.coco_json.parse_json_lean`, the reader before the columnar path);
- ``orjson``: orjson on the whole file (a dict per record, polygons included; it has no way to skip a field);
- ``msgspec``: msgspec decoding into typed ``msgspec.Struct`` records that declare only the needed fields
  (:func:`explorer.dataset.coco_columns.decode_columns`); segmentations are skipped without building objects.

It also times the whole ``load_coco`` (columnar path, checks included) and ``pycocotools.coco.COCO`` (the
reference reader: json.load + its indexes) on the same file. The garbage collector is off during the dict parsers
too (``decode_columns`` turns it off while it decodes), so the comparison is of the parsers, not of the collector.

Usage: ``python bench/bench_coco_parse.py [--images 118000] [--only NAME ...]``; results are printed and written to
``bench/out/bench_coco_parse.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_big_coco import OUT_DIR, cached_big_coco  # noqa: E402

PARSERS = ("json", "json-lean", "orjson", "msgspec", "load_coco", "pycocotools")


def _dict_columns(data: dict) -> dict[str, np.ndarray]:
    anns = data["annotations"]
    n = len(anns)
    return {
        "ids": np.fromiter((a["id"] for a in anns), np.int64, n),
        "image_ids": np.fromiter((a["image_id"] for a in anns), np.int64, n),
        "category_ids": np.fromiter((a["category_id"] for a in anns), np.int64, n),
        "xywh": np.asarray([a["bbox"] for a in anns], np.float64).reshape(n, 4),
        "iscrowd": np.fromiter((a.get("iscrowd", 0) for a in anns), np.int64, n),
        "areas": np.fromiter((a.get("area", np.nan) for a in anns), np.float64, n),
    }


def _run(name: str, path: str) -> dict:
    """Parse ``path`` with parser ``name`` (bytes already read), return time and annotation count."""
    raw = Path(path).read_bytes() if name != "pycocotools" else b""
    if name in ("json", "json-lean", "orjson"):
        gc.disable()  # as decode_columns does: millions of objects, the collector would walk them for nothing
    t0 = time.perf_counter()
    if name == "json":
        n = len(_dict_columns(json.loads(raw))["ids"])
    elif name == "json-lean":
        from explorer.dataset.coco_json import parse_json_lean

        n = len(_dict_columns(parse_json_lean(raw))["ids"])
    elif name == "orjson":
        import orjson

        n = len(_dict_columns(orjson.loads(raw))["ids"])
    elif name == "msgspec":
        from explorer.dataset.coco_columns import decode_columns

        n = len(decode_columns(raw).annotations.ids)
    elif name == "load_coco":
        from explorer.dataset.coco import load_coco

        del raw
        t0 = time.perf_counter()
        n = load_coco(path).num_annotations  # from the path: reading the file is timed too
    else:
        from pycocotools.coco import COCO

        n = len(COCO(path).anns)  # reads the file itself: reading is timed too
    dt = time.perf_counter() - t0
    return {"parser": name, "seconds": dt, "annotations": n, "maxrss_mb": _maxrss_mb()}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=PARSERS, default=list(PARSERS))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run(*args.child)))
        return 0
    path = cached_big_coco(args.images, args.seed)
    size_mb = path.stat().st_size / 1e6
    print(f"annotation file: {path} ({size_mb:.0f} MB)")
    rows = []
    for name in args.only:
        load = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, str(path)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_avg_1min_before": load}
        rows.append(row)
        print(
            f"{name:12s} {row['seconds']:6.2f} s  peak RSS {row['maxrss_mb']:6.0f} MB  "
            f"({row['annotations']:,} annotations, load average {load:.1f})"
        )
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "file_mb": size_mb,
        "results": rows,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "bench_coco_parse.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
