"""Benchmark: the model scan against the loop a user would write, in one process, on the same images.

The naive loop: decode each image with PIL, run torchvision's RetinaNet eagerly (``transform``, backbone, head,
anchor generator) and its own ``compute_loss`` per image: the per-image focal loss and nothing else. The model scan
(:class:`explorer.model_scan.run.ModelScan`) computes that loss too (checked equal, 1e-5 relative, on every image)
plus CE, the box loss, the splits by group, level and p_t, the exact gammas, the loss bins, detections against the
labels, score-IoU consistency and label problems.

    python bench/bench_model_scan.py [--images 200] [--device cpu] [--batch-size 1 4] [--engine local ray]
        [--data COCO.json [--image-dir DIR]] [--model demo|retinanet_resnet50_fpn|CHECKPOINT.pt]

The default is the demo model over the sample; on a GPU, e.g. ``--data ../shared/data/coco-mini/annotations/
instances_val2017.json --model retinanet_resnet50_fpn --device cuda --batch-size 1 8`` (COCO weights from the torch
hub cache, or a 91-class checkpoint such as ``bench/train_probe.py`` writes).

Every (engine, batch size) combination is one run of the scan, each checked against the naive loop. The Ray engine
runs on a local Ray instance started before the clock (its start-up is printed apart) with all of this machine's
CPUs, or on ``$RAY_ADDRESS``. Prints the machine, the load average and a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import synthetic
from explorer.dataset.formats import load_dataset
from explorer.dataset.image_stores import FolderImages
from explorer.detection.architectures import select_device
from explorer.model_scan import cli as model_cli
from explorer.model_scan import ray_engine
from explorer.model_scan.run import Accumulator, ModelScan, ModelScanConfig


@torch.no_grad()
def naive_losses(model: torch.nn.Module, ds, folder: Path, order: list[int], device: torch.device) -> list[float]:
    """torchvision's per-image classification loss, image by image, as a user would compute it."""
    out = []
    for index in order:
        image = Image.open(folder / ds.file_names[index]).convert("RGB")
        tensor = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1).to(device)
        ann = ds.image_annotations(index)
        target = {"boxes": torch.from_numpy(ann.boxes_xyxy).to(device),
                  "labels": torch.from_numpy(ann.category_ids).to(device)}  # fmt: skip
        images, targets = model.transform([tensor], [target])
        features = list(model.backbone(images.tensors).values())
        head = model.head(features)
        anchors = model.anchor_generator(images, features)
        out.append(float(model.compute_loss(targets, head, anchors)["classification"]))
    return out


def timed_scan(ds, store, loaded, config: ModelScanConfig, engine: str) -> tuple[ModelScan, float, float]:
    """One scan with the given engine, its wall time and this process's CPU time in seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    if engine == "local":
        scan = ModelScan.run(ds, store, loaded, config)
    else:
        acc = Accumulator()
        for result in ray_engine.iter_scan(ds, store, loaded, config):
            acc.add(result)
        scan = acc.result()
    return scan, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1], help="batch sizes to run (1)")
    parser.add_argument("--engine", choices=("local", "ray"), nargs="+", default=["local"], help="engines (local)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--data", type=Path, help="a COCO JSON (default: the sample)")
    parser.add_argument("--image-dir", type=Path, help="its images (default: the dataset's own folder)")
    parser.add_argument("--model", default="demo", help="demo, retinanet_resnet50_fpn(_v2) or a checkpoint (demo)")
    args = parser.parse_args()
    device = select_device(args.device)
    torch.set_num_threads(args.threads or max(1, torch.get_num_threads()))
    ds = load_dataset(args.data or synthetic.sample_dataset())
    folder = args.image_dir or Path(ds.image_root)
    store = FolderImages(folder)
    loaded = model_cli._model(argparse.Namespace(model=args.model, device=device.type, categories=None))
    if "ray" in args.engine:
        t0 = time.perf_counter()
        ray_engine.start_ray()
        print(f"ray.init(): {time.perf_counter() - t0:.1f} s (not in the figures below)")
    ModelScan.run(ds, store, loaded, ModelScanConfig(limit=2))  # warm-up (first-call allocations), not timed
    rows = []
    for engine in args.engine:
        for batch in args.batch_size:
            config = ModelScanConfig(limit=min(args.images, ds.num_images), batch_size=batch)
            scan, seconds, cpu = timed_scan(ds, store, loaded, config, engine)
            rows.append((engine, batch, scan, seconds, cpu, os.getloadavg()[0]))
    order = [ds.index_of(n) for n in rows[0][2].images["file_name"]]
    t0, c0 = time.perf_counter(), time.process_time()
    reference = naive_losses(loaded.model, ds, folder, order, device)
    naive, naive_cpu, naive_load = time.perf_counter() - t0, time.process_time() - c0, os.getloadavg()[0]
    for _, _, scan, *_ in rows:
        np.testing.assert_allclose(scan.images["focal_loss"], reference, rtol=1e-5, atol=1e-7)
    n = len(order)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
          f"torch threads, device {device}, torch {torch.__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"{n} images of {args.data or 'the sample'}, model {args.model}; per-image focal loss equal on all {n} in "
          "every run (1e-5)\n")  # fmt: skip
    print("| path | what it computes | total s | images/s | naive / it | CPU s (process) | load at its end |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(f"| naive loop (PIL, eager forward, torchvision `compute_loss`) | the focal loss | {naive:.1f} | "
          f"{n / naive:.2f} | 1.00x | {naive_cpu:.1f} | {naive_load:.1f} |")  # fmt: skip
    for engine, batch, _, seconds, cpu, load in rows:
        shown = f"{cpu:.1f}" if engine == "local" else "(workers)"
        print(f"| model scan, `--engine {engine} --batch-size {batch}` | every statistic of a row, bins, detections, "
              f"problems | {seconds:.1f} | {n / seconds:.2f} | {naive / seconds:.2f}x | {shown} | "
              f"{load:.1f} |")  # fmt: skip
    if "ray" in args.engine:
        ray_engine.import_ray().shutdown()


if __name__ == "__main__":
    main()
