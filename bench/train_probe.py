"""Train torchvision's full-size RetinaNet briefly on synthetic shapes, for the fast-inference equivalence check.

The equivalence part of `bench_detect.py` needs a detector whose scores are decisive: with random weights, dense
near-ties among overlapping boxes make any change of rounding flip NMS decisions (even torchvision's own float32
forward disagrees with itself when only cuDNN's algorithm choice changes). COCO weights cannot be downloaded on the
lent GPU machine, so this script trains `retinanet_resnet50_fpn` (or `_v2`), 91 classes as for COCO, from scratch on
the demo model's synthetic scenes for a fixed time, and saves its state dict for `bench_detect.py --weights`.

    python bench/train_probe.py --arch retinanet_resnet50_fpn --seconds 100 --out /tmp/r50.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.detection.architectures import build_model
from explorer.detection.demo_model import DEMO_SCENE_CONFIG, TRAIN_SEED, scene_seeds
from explorer.detection.train_demo import build_dataset, targets_xyxy, train_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="retinanet_resnet50_fpn")
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    coco, images = build_dataset(scene_seeds(args.images, TRAIN_SEED), DEMO_SCENE_CONFIG, args.workers)
    pixels = torch.from_numpy(np.stack(images)).to(device)
    targets = [
        (torch.from_numpy(b).to(device), torch.from_numpy(lab).to(device)) for b, lab in targets_xyxy(coco, len(images))
    ]
    model = build_model(args.arch, 91).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    t0, step = time.time(), 0
    while time.time() - t0 < args.seconds:
        lr = args.lr * min(1.0, (step + 1) / 100)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(images), (args.batch,), generator=gen).tolist()
        imgs = [pixels[i].permute(2, 0, 1).float().div_(255) for i in idx]
        tgts = [{"boxes": targets[i][0], "labels": targets[i][1]} for i in idx]
        losses = train_step(model, opt, imgs, tgts, device)
        step += 1
        if step % 100 == 0:
            print(
                f"{args.arch} iter {step} " + " ".join(f"{k} {v:.3f}" for k, v in losses.items()),
                flush=True,
            )
    print(f"{args.arch}: {step} iterations of batch {args.batch} in {time.time() - t0:.0f}s", flush=True)
    torch.save(model.state_dict(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
