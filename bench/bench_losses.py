"""Benchmark of the Loss lab: every curve of one page rerun, and the 1-million-anchor batch simulation.

Targets (issue 3): all curves of one rerun (1,000 points for every loss, values and gradients) under 30 ms; the
1-million-anchor batch simulation under 300 ms. Each is timed in the same process as its torchvision reference
where one exists (``sigmoid_focal_loss`` and the IoU losses, with autograd for the gradients).

Run: ``python bench/bench_losses.py [--repeat 15]``. Prints a Markdown table (median and best of the repeats).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from explorer.losses import box
from explorer.losses import box_curves as BC
from explorer.losses import budget as B
from explorer.losses import classification as cls
from explorer.losses import curves as C

N = 1000
F64 = torch.float64


def timeit(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) wall time in ms after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def all_curves() -> None:
    """Every table the Loss lab draws on a full rerun with default controls (all tabs)."""
    C.classification_curves(gammas=(0.0, 0.5, 1.0, 2.0, 5.0), n=N)
    C.soft_target_cut(0.6, n=N)
    C.dfl_loss_vs_mean(7.3, n=N)
    C.dfl_bins(7.3)
    BC.box_loss_curves("shift", n=N)
    BC.smooth_l1_curves((0.0, 0.11, 1.0), n=N)
    BC.box_pair_table([70, 55, 160, 140], [40, 40, 120, 100])


def soft_grid() -> None:
    C.soft_target_grid()  # 101 x 101 QFL and VFL heatmaps, values and gradients


# --- raw math: ours against torchvision on the same 1,000 points -------------------------------------------------

X = torch.linspace(-8, 8, N, dtype=F64)
Y = torch.ones(N, dtype=F64)
IOU = torch.linspace(1e-3, 1, N, dtype=F64)
GT = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=F64).expand(N, 4)
PRED = BC._path_boxes("shift", IOU)


def focal_ours() -> None:
    for g in (0.0, 0.5, 1.0, 2.0, 5.0):
        cls.focal_loss(X, Y, 0.25, g)
        cls.focal_loss_grad(X, Y, 0.25, g)


def focal_torchvision() -> None:
    for g in (0.0, 0.5, 1.0, 2.0, 5.0):
        x = X.clone().requires_grad_(True)
        sigmoid_focal_loss(x, Y, 0.25, g).sum().backward()


def iou_ours() -> None:
    for fn in (box.giou_loss, box.diou_loss, box.ciou_loss):
        p = PRED.clone().requires_grad_(True)
        fn(p, GT).sum().backward()


def iou_torchvision() -> None:
    for fn in (generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss):
        p = PRED.clone().requires_grad_(True)
        fn(p, GT).sum().backward()


# --- batch simulation ---------------------------------------------------------------------------------------------

SPEC = B.BatchSpec(n_anchors=1_000_000)


def simulation() -> None:
    batch = B.simulate_batch(SPEC)
    B.loss_budget(batch, alpha=0.25, gamma=2.0)


def simulation_with_cdf() -> None:
    batch = B.simulate_batch(SPEC)
    B.loss_budget(batch, alpha=0.25, gamma=2.0)
    B.normalized_loss_cdf(batch, (0.0, 0.5, 1.0, 2.0))


BATCH = B.simulate_batch(SPEC)
BX = torch.logit(torch.from_numpy(BATCH.p))
BY = torch.from_numpy(BATCH.target)


def budget_ours() -> None:
    B.loss_budget(BATCH, alpha=0.25, gamma=2.0)


def budget_torchvision() -> None:
    """The same three sums per group through torchvision's focal loss and autograd, on the same 1M logits."""
    x = BX.clone().requires_grad_(True)
    loss = sigmoid_focal_loss(x, BY, 0.25, 2.0)
    loss.sum().backward()
    for sl in BATCH.slices():
        loss[sl].sum().item()
        x.grad[sl].abs().sum().item()


def table(rows, r: int) -> None:
    print("| Benchmark | FocalScope ms (median / best) | torchvision ms (median / best) | ratio tv/ours | target |")
    print("|---|---|---|---|---|")
    for name, ours, ref, target in rows:
        m, b = timeit(ours, r)
        ref_txt, ratio = "—", "—"
        if ref is not None:
            rm, rb = timeit(ref, r)
            ref_txt, ratio = f"{rm:.2f} / {rb:.2f}", f"{rm / m:.2f}×"
        tgt = "—" if target is None else f"< {target:g} ms {'✓' if m < target else '✗'}"
        print(f"| {name} | {m:.2f} / {b:.2f} | {ref_txt} | {ratio} | {tgt} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--threads", default="default,1", help="comma-separated torch thread counts to run ('default' = as started)"
    )
    args = parser.parse_args()
    r = args.repeat
    rows = [
        ("All curves of one rerun (7 tables, 1,000 points per loss)", all_curves, None, 30.0),
        ("QFL/VFL heatmaps 101×101, values and gradients", soft_grid, None, None),
        ("Focal loss, 5 γ × 1,000 points, value + gradient", focal_ours, focal_torchvision, None),
        ("GIoU + DIoU + CIoU, 1,000 boxes, value + autograd", iou_ours, iou_torchvision, None),
        ("1M-anchor simulation: sample + budget (CE, α-CE, FL)", simulation, None, 300.0),
        ("1M-anchor simulation + Figure 4 CDFs (4 γ)", simulation_with_cdf, None, None),
        ("Budget sums only, 1M anchors (ours: closed form)", budget_ours, budget_torchvision, None),
    ]
    default_threads = torch.get_num_threads()
    print(f"Machine: {platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPU cores")
    print(f"torch {torch.__version__} · numpy {np.__version__} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"repeats: {r} (median / best, ms)")
    for spec in args.threads.split(","):
        n = default_threads if spec.strip() == "default" else int(spec)
        torch.set_num_threads(n)
        print(f"\n**torch threads: {n}**\n")
        table(rows, r)
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
