"""Benchmark: the model scan against the loop a user would write, in one process, on the same images.

The naive loop: decode each image with PIL, run torchvision's RetinaNet eagerly (``transform``, backbone, head,
anchor generator) and its own ``compute_loss`` per image: the per-image focal loss and nothing else. The model scan
(:class:`explorer.model_scan.run.ModelScan`) computes that loss too (checked equal, 1e-5 relative, on every image)
plus CE, the box loss, the splits by group, level and p_t, the exact gammas, the loss bins, detections against the
labels, score-IoU consistency and label problems.

    python bench/bench_model_scan.py [--images 200] [--model demo] [--device cpu]

Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.image_stores import FolderImages
from explorer.detection.architectures import select_device
from explorer.detection.loading import load_demo_model
from explorer.model_scan.run import ModelScan, ModelScanConfig


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = select_device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = synthetic.sample_dataset()
    ds = load_coco(path)
    loaded = load_demo_model(device)
    config = ModelScanConfig(limit=min(args.images, ds.num_images))
    t0 = time.perf_counter()
    scan = ModelScan.run(ds, FolderImages(path.parent / "images"), loaded, config)
    ours = time.perf_counter() - t0
    order = [ds.index_of(n) for n in scan.images["file_name"]]
    t0 = time.perf_counter()
    reference = naive_losses(loaded.model, ds, path.parent / "images", order, device)
    naive = time.perf_counter() - t0
    np.testing.assert_allclose(scan.images["focal_loss"], reference, rtol=1e-5, atol=1e-7)
    n = len(order)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"device {device}, torch {torch.__version__}, {date.today()}")  # fmt: skip
    print(f"{n} images of the sample, demo model; per-image focal loss equal on all {n} (1e-5 relative)\n")
    print("| path | what it computes | total s | images/s |")
    print("|---|---|---:|---:|")
    print(f"| naive loop (PIL, eager forward, torchvision `compute_loss`) | the focal loss | {naive:.1f} | "
          f"{n / naive:.2f} |")  # fmt: skip
    print(f"| model scan (`ModelScan.run`) | every statistic of a row, bins, detections, problems | {ours:.1f} | "
          f"{n / ours:.2f} |")  # fmt: skip
    print(f"\nratio (naive / model scan): {naive / ours:.2f}x")


if __name__ == "__main__":
    main()
