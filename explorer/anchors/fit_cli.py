"""``python -m explorer fit-anchors DATASET --out fit.json [--mode head|free] [--budget-s S] [options]``.

Fits RetinaNet anchors to a dataset (:func:`explorer.anchors.fit.fit_anchors`), shows progress on stderr, prints
the torchvision, mmdetection and detectron2 snippets and a before/after table, and writes the JSON report
(:func:`explorer.anchors.fit_export.report_dict`). Bad input ends with exit status 2 and one line (the caller,
:mod:`explorer.__main__`, turns ``ValueError`` into that).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TextIO

from explorer.anchors.fit import MODES
from explorer.dataset.formats import add_dataset_arguments

if TYPE_CHECKING:
    from explorer.anchors.fit import FitResult


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``fit-anchors`` on the CLI's subparsers."""
    p = sub.add_parser(
        "fit-anchors",
        help="tune RetinaNet anchors to a dataset under the exact matching rule",
        description="Search anchor sizes and ratios that give every box a positive at IoU >= pos (torchvision's "
        "Matcher, low-quality rescues not counted), compared with torchvision's default, mmdet k-means, YOLOv5 "
        "autoanchor and pyodi.",
    )
    add_dataset_arguments(p, split_help="the split to read (YOLO, VOC, or a folder of COCO files)")
    p.add_argument("--out", type=Path, required=True, help="write the JSON report here (.json)")
    p.add_argument("--mode", choices=MODES, default="head", help="head: keep 9 anchors per location; free: any")
    p.add_argument("--budget-s", type=_budget, default=60.0, help="seconds for the search (60)")
    p.add_argument("--subset", type=int, default=500, help="images the search runs on (500)")
    p.add_argument("--pos", type=float, default=0.5, help="IoU >= pos is positive (0.5)")
    p.add_argument("--neg", type=float, default=0.4, help="IoU < neg is negative (0.4)")
    p.add_argument("--min-size", type=int, default=800, help="resize: shorter side (800)")
    p.add_argument("--max-size", type=int, default=1333, help="resize: cap on the longer side (1333)")
    p.add_argument("--seed", type=int, default=0, help="subset draw, k-means and bootstrap seed (0)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


class _SearchBar:
    """A progress bar on stderr over the search's time budget (the search ends when it converges or the budget is
    spent, whichever comes first); the fit's messages are written above it."""

    def __init__(self, budget_s: float, *, disable: bool) -> None:
        from tqdm import tqdm

        self.t0 = time.perf_counter()
        self.bar = tqdm(total=max(1, round(budget_s)), unit="s", desc="search", file=sys.stderr, disable=disable)

    def say(self, msg: str) -> None:
        self.bar.n = min(self.bar.total, round(time.perf_counter() - self.t0))
        self.bar.write(msg, file=sys.stderr)
        self.bar.refresh()

    def __enter__(self) -> _SearchBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _check_out(path: Path) -> None:
    if path.suffix.lower() != ".json":
        raise ValueError(f"output file {path} must end in .json")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"output folder {folder} does not exist (for {path})")
    if path.is_dir():
        raise ValueError(f"output file {path} is a folder")


def run(args: argparse.Namespace) -> int:
    """Run ``fit-anchors``; ``ValueError`` for bad input (exit 2 in the caller)."""
    from explorer.anchors import fit_export as fx
    from explorer.anchors.fit import fit_anchors
    from explorer.anchors.grid import default_config
    from explorer.dataset.formats import load_dataset
    from explorer.dataset.scan_config import ScanConfig

    _check_out(args.out)
    if args.subset < 1:
        raise ValueError(f"--subset must be >= 1, got {args.subset}")
    scan = ScanConfig(
        anchors=default_config(min_size=args.min_size, max_size=args.max_size),
        pos_thresh=args.pos,
        neg_thresh=args.neg,
    )
    if not args.quiet:
        print(f"loading {args.dataset} ...", file=sys.stderr, flush=True)
    ds = load_dataset(args.dataset, format=args.format, split=args.split)
    with _SearchBar(args.budget_s, disable=args.quiet) as bar:
        fit = fit_anchors(
            ds, scan, mode=args.mode, budget_s=args.budget_s, seed=args.seed, subset_images=args.subset,
            progress=bar.say,
        )  # fmt: skip
    report = fx.report_dict(fit)
    args.out.write_text(json.dumps(report, indent=2))
    _print(fit, fx, sys.stdout)
    print(f"wrote {args.out}", file=sys.stdout)
    return 0


def _print(fit: FitResult, fx: ModuleType, out: TextIO) -> None:
    """The winner, the finalists, the snippets and the before/after table."""
    w, b = fit.winner, fit.before
    lo, hi = fit.ci
    print(f"winner: {w.name} ({fit.mode} mode, {fit.evaluations} scans, {fit.seconds:.1f} s)", file=out)
    print(
        f"boxes with a positive at IoU >= {fit.scan.pos_thresh:g} (no low-quality rescue): "
        f"{100 * b.full.covered:.2f} % -> {100 * w.full.covered:.2f} % "
        f"(95 % bootstrap on the {fit.subset_images}-image subset: {100 * lo:.2f} .. {100 * hi:.2f} %)",
        file=out,
    )
    print("\nfinalists on the full dataset (primary, median and 10th percentile positives per box):", file=out)
    for c in fit.candidates:
        s = c.full
        print(f"  {c.name:<26} {100 * s.covered:7.2f} %  {s.median_pos:6.1f}  {s.p10_pos:6.1f}", file=out)
    warning = fx.head_warning(w.config)
    if warning:
        print(f"\nwarning: {warning}", file=out)
    print("\n# torchvision\n" + fx.torchvision_snippet(w.config.sizes, w.config.aspect_ratios), file=out)
    print("\n# mmdetection\n" + fx.mmdet_snippet(w.ladder, w.config.strides), file=out)
    print("\n# detectron2\n" + fx.detectron2_snippet(w.config.sizes, w.config.aspect_ratios), file=out)
    print("\nbefore (torchvision default) -> after, all images:", file=out)
    print(fx.format_table(fx.before_after_table(fit.before_result, fit.winner_result)), file=out)
    print("\nanchors by label (before -> after):", file=out)
    for r in fx.label_totals(fit.before_result, fit.winner_result).itertuples():
        print(f"  {r.count.replace('_', ' '):<18}{r.before:>14,} -> {r.after:,}", file=out)
    print("positives per level (before -> after):", file=out)
    for r in fx.before_after_levels(fit.before_result, fit.winner_result).itertuples():
        print(f"  {r.level:<4}{r.positives_before:>14,} -> {r.positives_after:,}", file=out)
    print("per class: the report's tables.per_class", file=out)
