"""``python -m explorer model-scan DATASET [--images DIR|ZIP] --model MODEL --out STATS.parquet [options]``.

DATASET is any format :func:`explorer.dataset.formats.load_dataset` reads (COCO, YOLO, Pascal VOC); ``--images``
defaults to the dataset's own image folder.

Runs a detector over the dataset's images and writes one row per image (see :mod:`explorer.model_scan.image_stats`)
with its sidecars (:mod:`explorer.model_scan.store`); rerunning with the same ``--out`` resumes. MODEL is ``demo``,
``retinanet_resnet50_fpn``, ``retinanet_resnet50_fpn_v2`` (torchvision's COCO weights from the torch hub cache, or
downloaded) or a checkpoint path (a state dict, checked before it is read).

``--batch-size B`` runs B images per forward pass (default 1 on the CPU, 8 on CUDA; only images of one padded input
size share a pass, so the rows equal those of B = 1); a CUDA out-of-memory error halves it, down to one image on a
CPU copy of the model, and says so in one line. ``--engine ray`` runs the same scan on Ray Data
(:mod:`explorer.model_scan.ray_engine`): reading and decoding in CPU tasks, the model in one actor per GPU (CPU
actors without one, ``--actors N``); without ``RAY_ADDRESS`` it starts a local Ray instance, with it
(``RAY_ADDRESS=auto`` or ``ray://HOST:10001``) it runs on that cluster, whose workers must reach the images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from explorer.dataset.formats import add_dataset_arguments

#: Images per chunk written to disk (what a stop can lose at most).
CHUNK = 25


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model-scan",
        help="run a detector over a dataset: where each image's loss goes, easy/hard by p_t, label problems",
        description="Run a RetinaNet over every image of a COCO dataset and write per-image loss statistics "
        "(torchvision's focal loss, CE, box loss; by group, level and p_t), detections against the labels and "
        "likely label problems. Rerunning with the same --out resumes.",
    )
    add_dataset_arguments(p, split_help="the split to read (YOLO, VOC, or a folder of COCO files)")
    p.add_argument("--images", type=Path, help="the images: a folder or a .zip (default: the dataset's own)")
    p.add_argument("--model", required=True, help="demo, retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2 or a .pt")
    p.add_argument("--out", type=Path, required=True, help="the per-image table (.parquet); sidecars beside it")
    p.add_argument("--categories", type=Path, help="a checkpoint's class names: a COCO categories JSON")
    p.add_argument("--limit", type=int, help="scan this many images, drawn with --seed (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the draw of --limit (0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")
    p.add_argument("--score", type=float, default=0.5, help="score at which detections count (0.5)")
    p.add_argument("--pt", type=float, default=0.6, help="p_t at or above which an anchor is easy (0.6)")
    p.add_argument("--alpha", type=float, default=0.25, help="focal alpha (0.25; -1: none)")
    p.add_argument("--gamma", type=float, default=2.0, help="focal gamma (2)")
    p.add_argument(
        "--assigners", type=_names, default=(),
        help="also compare these assigners on every image, e.g. max_iou,atss,tal_mmdet,tal_ultralytics,simota",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int,
        help="images per forward pass (default 1 on the CPU, 8 on CUDA; halved on CUDA out-of-memory)",
    )  # fmt: skip
    p.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process (default); ray: Ray Data, reading in CPU tasks and one model actor per GPU (CPU "
        "actors without one); a local Ray instance, or the cluster at $RAY_ADDRESS. Needs pip install 'ray[data]'",
    )  # fmt: skip
    p.add_argument("--actors", type=int, help="with --engine ray: model actors (default: one per GPU, else 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _model(args: argparse.Namespace):
    import torch

    from explorer.detection import loading
    from explorer.detection.architectures import COCO_ARCHITECTURES, select_device

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA GPU is available; use --device auto or cpu")
    device = select_device(None if args.device == "auto" else args.device)
    if args.model == "demo":
        return loading.load_demo_model(device)
    if args.model in COCO_ARCHITECTURES:
        return loading.load_coco_model(args.model, device=device)
    path = Path(args.model)
    if not path.is_file():
        raise ValueError(f"--model must be demo, {', '.join(COCO_ARCHITECTURES)} or a checkpoint file; got {path}")
    categories = loading.parse_categories(args.categories.read_bytes()) if args.categories else None
    return loading.load_checkpoint_model(path.read_bytes(), categories=categories, device=device)


def _engine(args: argparse.Namespace):  # -> the iter_scan of the chosen engine
    """``iter_scan`` (local) or the Ray engine's, with ``--actors``; ``ValueError`` when Ray is not installed."""
    from functools import partial

    from explorer.model_scan import run as local

    if args.actors is not None and (args.engine != "ray" or args.actors < 1):
        raise ValueError(f"--actors needs --engine ray and a count >= 1, got {args.actors}")
    if args.engine == "local":
        return local.iter_scan
    from explorer.model_scan import ray_engine

    ray_engine.import_ray()
    return partial(ray_engine.iter_scan, actors=args.actors)


def _store(path: Path | None):  # -> ImageStore (imported lazily)
    from explorer.dataset.image_stores import FolderImages, ZipImages

    if path is None:
        raise ValueError("--images is needed: the dataset does not say where its images are")
    if path.is_dir():
        return FolderImages(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return ZipImages(path.read_bytes())
    raise ValueError(f"--images must be a folder or a .zip file, got {path}")


def run(args: argparse.Namespace) -> int:
    from explorer.dataset.formats import load_dataset
    from explorer.model_scan.ap import coco_ap
    from explorer.model_scan.image_stats import LossSettings
    from explorer.model_scan.run import Accumulator, ModelScanConfig
    from explorer.model_scan.store import ScanStore

    store = ScanStore(args.out)
    config = ModelScanConfig(
        LossSettings(alpha=args.alpha, gamma=args.gamma, pt_thresh=args.pt),
        args.score,
        args.limit,
        args.seed,
        args.assigners,
        args.batch_size,
    )
    scan_images = _engine(args)
    ds = load_dataset(args.dataset, format=args.format, split=args.split)
    root = args.images or (Path(ds.image_root) if ds.image_root else None)
    images, loaded = _store(root), _model(args)
    done = store.done_ids()
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="img", file=sys.stderr, desc="model scan", dynamic_ncols=True)
        if done:
            print(f"resuming: {len(done):,} images already scanned in {store.parts}", file=sys.stderr)

    def progress(n: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(n - bar.n)

    def notice(line: str) -> None:
        (bar.write if bar is not None else print)(f"note: {line}", file=sys.stderr)

    t0 = time.perf_counter()
    acc = Accumulator()
    try:
        for result in scan_images(ds, images, loaded, config, skip=done, progress=progress, notice=notice):
            acc.add(result)
            if len(acc.rows) >= CHUNK:
                store.write_part(acc.result())
                acc = Accumulator()
    finally:
        if acc.rows:
            store.write_part(acc.result())
        if bar is not None:
            bar.close()
    scan = store.finish()
    _summary(scan, coco_ap(ds, scan.detections, scan.images["image_id"].tolist()), time.perf_counter() - t0)
    print(f"wrote {store.out} ({len(scan.images):,} rows) with .problems / .detections / .bins beside it")
    return 0


def _summary(scan, ap: dict[str, float], seconds: float) -> None:
    from explorer.labels import AnchorLabel
    from explorer.model_scan.image_stats import COUNTED

    im = scan.images
    ok = im[im["error"] == ""]
    print(f"{len(im):,} images ({len(im) - len(ok):,} unreadable) in {seconds:.1f} s")
    if not len(ok):
        return
    print(f"mean per-image loss: focal {ok['focal_loss'].mean():.4f}, CE {ok['ce_loss'].mean():.4f}, "
          f"box {ok['box_loss'].mean():.4f}; COCO AP {ap['AP']:.3f}, AP50 {ap['AP50']:.3f}")  # fmt: skip
    for kind in ("focal", "ce"):
        sums = {g: float((ok[f"{g.column}_{kind}"] / ok["normalizer"]).sum()) for g in COUNTED}
        total = sum(sums.values()) or 1.0
        shares = ", ".join(f"{g.display} {v / total:.1%}" for g, v in sums.items())
        print(f"share of the {kind} loss: {shares}")
    easy = {g: int(ok[f"{g.column}_easy_pt"].sum()) for g in COUNTED}
    iou_easy = int(ok[AnchorLabel.EASY_NEGATIVE.column].sum())
    print(f"easy by p_t: {', '.join(f'{g.display} {n:,}' for g, n in easy.items())}; easy by IoU: {iou_easy:,}")
    kinds = scan.problems["kind"].value_counts()
    print("likely label problems: " + (", ".join(f"{k} {n:,}" for k, n in kinds.items()) or "none"))
