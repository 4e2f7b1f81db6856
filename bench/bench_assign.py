"""Benchmark: anchor labeling of an 800x1333 input with 100 GT boxes, beside torchvision, and a page rerun.

Run: ``python bench/bench_assign.py [--repeats 30] [--gt 100] [--no-apptest]``

1. Labeling: FocalScope's grid-sparse IoU + max-IoU labeling with every per-anchor and per-GT result, against
   torchvision's ``AnchorGenerator`` + ``box_iou`` + ``Matcher`` (its labels only) on the same boxes; the labels are
   checked to be identical before timing.
2. Page rerun after a threshold change: the Anchor lab's core call chain with the caches warm (labeling from the
   cached sparse IoU, headline numbers, tables, the overlay image, the figures), and an AppTest rerun of the page.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou as tv_box_iou

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.anchors import lab  # noqa: E402
from explorer.anchors.grid import TORCHVISION_SIZES, AnchorConfig, generate_anchors, level_grids  # noqa: E402
from explorer.anchors.iou import sparse_iou_grid  # noqa: E402
from explorer.anchors.max_iou import assign_from_sparse  # noqa: E402
from explorer.anchors.stats import threshold_sweep  # noqa: E402
from explorer.figures import anchors as figs  # noqa: E402
from explorer.labels import IGNORED, POSITIVE  # noqa: E402


def coco_like_boxes(rng: np.random.Generator, m: int, height: int, width: int) -> np.ndarray:
    """m boxes with COCO-like sizes (log-uniform 8..500 px, aspect h/w in [0.5, 2]) inside the image."""
    s = np.exp(rng.uniform(np.log(8), np.log(500), m))
    ar = np.exp(rng.uniform(-0.7, 0.7, m))
    w, h = s / np.sqrt(ar), s * np.sqrt(ar)
    cx, cy = rng.uniform(0, width, m), rng.uniform(0, height, m)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes.clip(0, [width, height, width, height]).astype(np.float32)


def timeit(fn, repeats: int) -> tuple[float, float]:
    """(median, min) wall time in ms over ``repeats`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), min(ts)


def bench_labeling(repeats: int, m: int) -> list[tuple[str, float, float]]:
    h, w = 800, 1333
    cfg = AnchorConfig()
    anchors, levels = generate_anchors(h, w, cfg)
    grids = level_grids(h, w, cfg)
    gt = coco_like_boxes(np.random.default_rng(0), m, h, w)

    # torchvision reference objects
    gen = AnchorGenerator(TORCHVISION_SIZES, ((0.5, 1.0, 2.0),) * 5)
    image_list = ImageList(torch.zeros(1, 3, 800, 1344), [(h, w)])
    feats = [torch.zeros(1, 1, gh, gw) for gh, gw in [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]]
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    gt_t = torch.from_numpy(gt)

    def tv_anchors():
        return gen(image_list, feats)[0]

    def tv_label():
        q = tv_box_iou(gt_t, anchors_t)
        return matcher(q)

    def ours_label():
        sp = sparse_iou_grid(anchors, gt, grids)
        return assign_from_sparse(sp, levels=levels)

    anchors_t = tv_anchors()
    assert np.array_equal(anchors_t.numpy(), anchors), "anchors differ from torchvision"
    ours = ours_label()
    codes = np.where(ours.label == POSITIVE, ours.matched_gt, np.where(ours.label == IGNORED, -2, -1))
    assert np.array_equal(codes, tv_label().numpy()), "labels differ from torchvision"
    print(
        f"check: {len(anchors):,} anchors and labels identical to torchvision; {int((ours.label == POSITIVE).sum())} "
        f"positives, {len(sparse_iou_grid(anchors, gt, grids).iou):,} intersecting pairs"
    )

    rows = [
        ("anchors: ours `generate_anchors`", *timeit(lambda: generate_anchors(h, w, cfg), repeats)),
        ("anchors: torchvision `AnchorGenerator`", *timeit(tv_anchors, repeats)),
        ("labeling: ours sparse IoU + max-IoU, all per-anchor/per-GT results", *timeit(ours_label, repeats)),
        ("labeling: torchvision `box_iou` + `Matcher` (labels only)", *timeit(tv_label, repeats)),
        (
            "anchors + labeling: ours",
            *timeit(
                lambda: assign_from_sparse(sparse_iou_grid(generate_anchors(h, w, cfg)[0], gt, grids), levels=levels),
                repeats,
            ),
        ),
        ("anchors + labeling: torchvision", *timeit(lambda: matcher(tv_box_iou(gt_t, tv_anchors())), repeats)),
    ]
    return rows


def bench_page_chain(repeats: int) -> list[tuple[str, float, float]]:
    """The page's work after a threshold change, caches warm (a 640x480 sample scene, as the page's default)."""
    from explorer.dataset.image_boxes import boxes_from_scene
    from explorer.overlay import pad_canvas, resize_image
    from explorer.synthetic import CLASS_NAMES, make_scene

    img, anns = make_scene(7)
    gts = boxes_from_scene(anns, img.shape[1], img.shape[0], CLASS_NAMES)
    scene = lab.prepare_scene(*img.shape[:2], AnchorConfig())
    boxes = scene.to_input(gts.boxes)
    sp = lab.compute_sparse(scene, boxes)
    canvas = pad_canvas(resize_image(img, *scene.resized_hw), *scene.padded_hw)
    sweep = threshold_sweep(sp)
    thresholds = iter(np.tile([0.5, 0.55, 0.6, 0.45], 1000))

    def open_tab():
        pos = float(next(thresholds))
        res = lab.label_anchors(scene, boxes, sp, pos_thresh=pos, neg_thresh=min(0.4, pos))
        lab.summary(res, pos)
        lab.positives_image(canvas, scene, boxes, res, show_ignored=True)
        return res, pos

    def chain():
        res, pos = open_tab()
        lvl = lab.per_level_table(scene, res)
        counts = {k: lvl[k].to_numpy()[:-1] for k in ("positive", "ignored", "hard negative", "easy negative")}
        figs.level_label_bar(counts, scene.level_names, log_y=True)
        figs.iou_hist_figure(res.max_iou, pos_thresh=pos, neg_thresh=0.4)
        lab.per_gt_table(scene, boxes, gts.classes, res)
        x, y = lab.default_location(scene, boxes)
        lab.location_table(scene, x, y, boxes, res)
        figs.threshold_sweep_figure(sweep, current=pos)

    return [
        ("page core chain after a threshold change, default Image tab (scene 640x480 -> 800x1066)",
         *timeit(open_tab, repeats)),
        ("page core chain after a threshold change, every tab's views computed", *timeit(chain, repeats)),
    ]  # fmt: skip


def bench_apptest(repeats: int) -> list[tuple[str, float, float]]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "2_Anchor_lab.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    values = iter(np.tile([0.55, 0.6, 0.5, 0.45], 1000))

    def rerun():
        at.sidebar.slider(key="al_pos").set_value(float(next(values))).run()
        assert not at.exception

    return [("page rerun in AppTest after moving the positive threshold (all of Streamlit's work)",
             *timeit(rerun, max(3, repeats // 3)))]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--gt", type=int, default=100)
    parser.add_argument("--no-apptest", action="store_true")
    args = parser.parse_args()
    import os

    os.chdir(ROOT)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}, numpy {np.__version__}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads)"
    )
    rows = bench_labeling(args.repeats, args.gt)
    rows += bench_page_chain(args.repeats)
    if not args.no_apptest:
        rows += bench_apptest(args.repeats)
    print("\n| What | median ms | min ms |\n|---|---:|---:|")
    for name, med, mn in rows:
        print(f"| {name} | {med:.1f} | {mn:.1f} |")
    ours = next(r for r in rows if r[0].startswith("labeling: ours"))
    ref = next(r for r in rows if r[0].startswith("labeling: torchvision"))
    print(f"\nlabeling speed-up vs torchvision (median): {ref[1] / ours[1]:.1f}x; target < 50 ms: "
          f"{'met' if ours[1] < 50 else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
