"""Command line: ``python -m explorer scan DATASET [--out stats.parquet|stats.csv] [options]``,
``python -m explorer convert DATASET --to coco|yolo|voc OUT``, ``python -m explorer model-scan``
(:mod:`explorer.model_scan.cli`) and ``python -m explorer fit-anchors DATASET --out fit.json``
(:mod:`explorer.anchors.fit_cli`).

DATASET is a COCO JSON (or .json.gz), a YOLO data.yaml or images/ + labels/ folder, or a Pascal VOC folder
(:func:`explorer.dataset.formats.load_dataset`). ``scan`` labels it with RetinaNet's anchors and label assignment
(torchvision's defaults unless told otherwise), shows a progress bar on stderr, prints a summary table, and writes
the per-image table (and optionally the per-box and per-class tables) as Parquet or CSV; ``convert`` writes it in
another format (:mod:`explorer.dataset.convert`). Invalid input ends with exit status 2 and a one-line message,
never a traceback.

Example:
    python -m explorer scan instances_val2017.json --out val_stats.parquet --classes-out val_classes.csv
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn, TextIO

import pandas as pd

from explorer.anchors import fit_cli
from explorer.anchors.config_text import anchors_from_report, parse_numbers, parse_sizes
from explorer.anchors.grid import CONVENTIONS, TORCHVISION_SIZES, AnchorConfig, default_config
from explorer.dataset.convert import add_convert_command, run_convert
from explorer.dataset.formats import add_dataset_arguments
from explorer.model_scan import cli as model_scan_cli

#: Tagged classes printed per tag.
_SHOW_CLASSES = 8


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return parse_numbers(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive(text: str) -> float:
    """One finite number > 0 (``--max-mb``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _sizes(text: str) -> tuple[tuple[float, ...], ...]:
    """'32,40,50;64,80,101;...' -> per-level sizes (integers stay integers, as torchvision's)."""
    try:
        return parse_sizes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _ints(text: str) -> tuple[int, ...]:
    values = _floats(text)
    if any(not float(v).is_integer() for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return tuple(int(v) for v in values)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m explorer", description="FocalScope command line tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser(
        "scan",
        help="per-image anchor-label statistics of a dataset (COCO, YOLO or Pascal VOC)",
        description="Scan a dataset (COCO JSON, YOLO, Pascal VOC): positives, ignored, hard and easy negatives per "
        "image, as "
        "torchvision's RetinaNet labels them (Matcher with low-quality matches), plus per-class, per-level and "
        "per-size aggregates.",
    )
    add_dataset_arguments(scan, split_help="the split to scan (YOLO, VOC, or a folder of COCO files)")
    scan.add_argument("--out", type=Path, help="write the per-image table (.parquet or .csv)")
    scan.add_argument(
        "--boxes-out", type=Path, help="write the per-box table (.parquet: streamed, for any size; or .csv)"
    )
    scan.add_argument("--classes-out", type=Path, help="write the per-class table (.parquet or .csv)")
    scan.add_argument("--problems-out", type=Path, help="write the validation problems table (.parquet or .csv)")
    scan.add_argument("--min-size", type=int, default=800, help="resize: shorter side (800)")
    scan.add_argument("--max-size", type=int, default=1333, help="resize: cap on the longer side (1333)")
    scan.add_argument("--pos", type=float, default=0.5, help="IoU >= pos is positive (0.5)")
    scan.add_argument("--neg", type=float, default=0.4, help="IoU < neg is negative; [neg, pos) ignored (0.4)")
    scan.add_argument(
        "--no-low-quality", action="store_true", help="disable low-quality matches (allow_low_quality_matches)"
    )
    scan.add_argument("--convention", choices=CONVENTIONS, default="torchvision", help="anchor/resize convention")
    scan.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="anchor sizes per level, e.g. '32,40,50;64,80,101;128,161,203;256,322,406;512,645,812'",
    )
    scan.add_argument("--ratios", type=_floats, default=(0.5, 1.0, 2.0), help="aspect ratios h/w (0.5,1,2)")
    scan.add_argument("--strides", type=_ints, default=None, help="level strides (8,16,32,64,128)")
    scan.add_argument(
        "--anchors", type=Path, default=None, help="use the fitted sizes and ratios of a fit-anchors report (fit.json)"
    )
    scan.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto/cpu: the compiled CPU kernel (the fastest); cuda: torchvision's operations on the GPU",
    )
    scan.add_argument("--workers", type=int, default=None, help="CPU threads (default: one per CPU, up to 8)")
    scan.add_argument(
        "--max-mb",
        type=_positive,
        default=2000.0,
        help="refuse annotation files read whole larger than this (MB); files of 1 GB or more are read in blocks "
        "under FOCALSCOPE_DATASET_MEMORY_MB",
    )
    scan.add_argument("--quiet", action="store_true", help="no progress bar")
    model_scan_cli.add_parser(sub)
    add_convert_command(sub)
    fit_cli.add_parser(sub)
    return parser


def _write(df: pd.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        raise ValueError(f"output file {path} must end in .parquet or .csv")


def _check_out(path: Path | None) -> None:
    """Refuse a bad output path before the (possibly long) load and scan."""
    if path is None:
        return
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"output file {path} must end in .parquet or .csv")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"output folder {folder} does not exist (for {path})")
    if path.is_dir():
        raise ValueError(f"output file {path} is a folder")


def _bytes(mb: float) -> int:
    """``--max-mb`` in bytes (a huge value means no limit)."""
    return int(min(mb * 1e6, sys.maxsize))


#: A fit-anchors report is a few kB; anything much larger is not one.
MAX_REPORT_BYTES = 10_000_000


def _report_anchors(path: Path) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    """The fitted sizes and ratios of a fit-anchors report file (``ValueError`` naming the file otherwise)."""
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise ValueError(f"{path.stat().st_size:,} bytes is too large for a fit-anchors report")
        return anchors_from_report(path.read_bytes())
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _scan_anchors(args: argparse.Namespace) -> AnchorConfig:
    """The scan's anchors from ``--convention``, ``--sizes`` / ``--anchors``, ``--ratios``, ``--strides`` and the
    input size."""
    overrides: dict = {"min_size": args.min_size, "max_size": args.max_size, "aspect_ratios": tuple(args.ratios)}
    if args.anchors is not None:
        if args.sizes is not None:
            raise ValueError("give --anchors or --sizes, not both")
        args.sizes, overrides["aspect_ratios"] = _report_anchors(args.anchors)
    if args.sizes is not None:
        overrides["sizes"] = args.sizes
    elif args.strides is not None and args.convention == "torchvision":
        overrides["sizes"] = TORCHVISION_SIZES[: len(args.strides)]
    if args.strides is not None:
        overrides["strides"] = args.strides
    return default_config(args.convention, **overrides)


def run_scan(args: argparse.Namespace) -> int:
    from explorer.dataset.formats import load_dataset
    from explorer.dataset.scan import _cuda_available, scan_dataset
    from explorer.dataset.scan_config import ScanConfig
    from explorer.dataset.scan_result import format_summary

    if args.device == "cuda" and not _cuda_available():  # before the (possibly long) load
        raise ValueError("no CUDA GPU is available; use --device auto or cpu")
    for p in (args.out, args.boxes_out, args.classes_out, args.problems_out):
        _check_out(p)
    cfg = ScanConfig(
        anchors=_scan_anchors(args),
        pos_thresh=args.pos,
        neg_thresh=args.neg,
        low_quality=not args.no_low_quality,
    )
    err = sys.stderr
    t0 = time.perf_counter()
    if not args.quiet:
        print(f"loading {args.dataset} ...", file=err, flush=True)
    ds = load_dataset(args.dataset, format=args.format, split=args.split, max_bytes=_bytes(args.max_mb))
    t_load = time.perf_counter() - t0
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=ds.num_images, unit="img", file=err, desc="scanning", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    boxes_to = _boxes_parquet(args.boxes_out, ds.num_annotations)
    try:
        result = scan_dataset(ds, cfg, progress=progress, device=args.device, workers=args.workers, boxes_to=boxes_to)
    finally:
        if bar is not None:
            bar.close()
        if boxes_to is not None and boxes_to != args.boxes_out:
            boxes_to.unlink(missing_ok=True)  # streamed only to keep it out of memory; not asked for
    out = sys.stdout
    print(f"{ds.name}: loaded in {t_load:.1f} s, scanned in {result.seconds:.1f} s ({result.path})", file=out)
    problems = ds.problem_summary()
    if len(problems):
        print("\nvalidation problems (see --problems-out for every record):", file=out)
        first = ds.problems.drop_duplicates(["severity", "kind"]).set_index(["severity", "kind"])["message"]
        for r in problems.itertuples():
            # a kind reported once (e.g. the crowd total) shows its message: "crowd 1" alone reads like one box
            detail = f"  {first.get((r.severity, r.kind), '')}" if r.count == 1 else ""
            print(f"  {r.severity:<8} {r.kind:<20} {r.count:>9,}{detail}", file=out)
    print("", file=out)
    print(format_summary(result), file=out)
    classes = result.per_class()
    _print_tagged_classes(classes, out)
    for path, df in (
        (args.out, result.images),
        (args.boxes_out, result.boxes),
        (args.classes_out, classes),
        (args.problems_out, ds.problems),
    ):
        if path is not None and path == boxes_to:
            print(f"wrote {path} ({int(result.summary()['boxes']):,} rows, streamed)", file=out)
        elif path is not None:
            _write(df, path)
            print(f"wrote {path} ({len(df):,} rows)", file=out)
    return 0


def _print_tagged_classes(classes: pd.DataFrame, out: TextIO) -> None:
    """The under- and over-represented classes of a scan, the most extreme first."""
    for tag, ascending in (("under-represented", True), ("over-represented", False)):
        tagged = classes[classes["tag"] == tag].sort_values("representation", ascending=ascending)
        if not len(tagged):
            continue
        print(f"\n{tag} classes ({len(tagged)}), by share of positive anchors against a uniform share:", file=out)
        for r in tagged.head(_SHOW_CLASSES).itertuples():
            print(
                f"  {r.category[:24]:<24} {r.instances:>9,} boxes  {r.positives_per_instance:6.1f} pos/box  "
                f"{r.representation:6.2f}x uniform",
                file=out,
            )
        if len(tagged) > _SHOW_CLASSES:
            print(f"  ... and {len(tagged) - _SHOW_CLASSES} more (see --classes-out)", file=out)


def _boxes_parquet(boxes_out: Path | None, num_boxes: int) -> Path | None:
    """Where the scan streams its per-box table: the ``--boxes-out`` Parquet file, or for a dataset of more than
    :data:`explorer.dataset.scan.STREAM_BOXES_MIN` boxes a temporary file (deleted after the run); None to keep
    it in memory."""
    from explorer.dataset import scan

    if boxes_out is not None and boxes_out.suffix.lower() == ".parquet":
        return boxes_out
    if num_boxes <= scan.STREAM_BOXES_MIN:
        return None
    if boxes_out is not None:
        raise ValueError(
            f"{num_boxes:,} boxes: the per-box table is too large to hold in memory for {boxes_out.name}; "
            "write it as .parquet (streamed)"
        )
    handle, name = tempfile.mkstemp(suffix=".parquet", prefix="focalscope-boxes-")
    os.close(handle)
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "scan":
            return run_scan(args)
        if args.command == "model-scan":
            return model_scan_cli.run(args)
        if args.command == "convert":
            return run_convert(args)
        if args.command == "fit-anchors":
            return fit_cli.run(args)
    except ValueError as exc:  # includes CocoFormatError
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc} ({exc.filename})" if exc.filename else f"error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory while reading the annotations", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it first
    return 2  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
