"""Benchmark: FocalScope's fast RetinaNet inference against torchvision's default eager float32 forward.

Both run in one process on the same input (a 640x480 synthetic scene, resized by the model to 800x1066), batch 1,
starting from the same (3, H, W) float tensor on the device. Reported: median and mean milliseconds per image, the
speed-up, and equivalence of the detections (each of the reference's top-100 boxes matched by a fast box of the
same label with IoU >= 0.95 and a score within 0.02), on the timed scene and a few more.

Weights: torchvision's COCO weights when they are in the torch hub cache; otherwise random weights with a fixed seed,
made to behave like a detector: BatchNorm statistics calibrated on the synthetic scenes, the class logits stretched
and their bias set so that a few thousand (anchor, class) pairs pass the 0.05 threshold (300 detections per image).
The output says which.

    python bench/bench_detect.py                       # GPU if present: 100 timed runs
    python bench/bench_detect.py --device cpu --iters 3 --warmup 1
    python bench/bench_detect.py --page-check          # also run the Live detections page's core path
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.detection.architectures import V1, build_model, select_device
from explorer.detection.fast import FastRetinaNet, match_detections_strict
from explorer.detection.inference import image_to_tensor
from explorer.detection.loading import coco_weights_path, load_coco_model, load_demo_model
from explorer.detection.view import sample_scene


def random_detector(arch: str, seed: int, calibration: list[torch.Tensor], *, target_pairs: int = 3000) -> nn.Module:
    """A RetinaNet with random weights that nevertheless produces a full set of non-trivial detections."""
    torch.manual_seed(seed)
    model = build_model(arch, 91).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration images
    with torch.no_grad():
        model.backbone.train()
        for x in calibration:
            model.backbone(model.transform([x])[0].tensors)
        model.backbone.eval()
        # Default head init (weights N(0, 0.01)) gives nearly constant logits: stretch them to a spread of ~1 and set
        # the bias so that about ``target_pairs`` (anchor, class) pairs of a calibration image score above 0.05.
        cls = model.head.classification_head.cls_logits
        logits = torch.cat(
            [
                model.head(list(model.backbone(model.transform([x])[0].tensors).values()))["cls_logits"].flatten()
                for x in calibration
            ]
        )
        gain = 1.0 / float(logits.std())
        cls.weight.mul_(gain)
        logits = (logits - cls.bias[0]) * gain
        cut = float(torch.topk(logits, target_pairs * len(calibration)).values[-1])
        cls.bias.fill_(math.log(0.05 / 0.95) - cut)
    return model


def timed(fn, x: torch.Tensor, device: torch.device, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def page_check() -> dict:
    """The Live detections page's core path (demo model, default device, one sample scene, loss shares)."""
    from explorer.detection.evaluation import match_detections
    from explorer.detection.inference import run_inference
    from explorer.detection.lossmaps import loss_breakdown

    t0 = time.perf_counter()
    loaded = load_demo_model()
    scene = sample_scene(0)
    result = run_inference(loaded, scene.image)
    result = run_inference(loaded, scene.image)  # second run: warm
    shares = loss_breakdown(result.dense, scene.gt_boxes, scene.gt_labels).shares()
    matching = match_detections(result.detections, scene.gt_boxes, scene.gt_labels)
    return {
        "device": result.device,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "detections": len(result.detections),
        "candidates": len(result.candidates),
        "matching": matching.counts(),
        "focal_shares": dict(zip(shares["group"], shares["Focal share"].round(4), strict=True)),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default=V1)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--scenes", type=int, default=5, help="scenes checked for equivalence")
    parser.add_argument("--page-check", action="store_true")
    parser.add_argument("--weights", help="a state dict for --arch (91 classes), e.g. from bench/train_probe.py")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)

    device = select_device(args.device)
    scenes = [image_to_tensor(sample_scene(i).image) for i in range(args.scenes + 2)]
    # Random weights are calibrated on the very scenes they are benchmarked on (no accuracy is claimed).
    calibration, bench_images = scenes, scenes[2:]
    if args.weights:
        model = build_model(args.arch, 91)
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        weights = f"trained on synthetic shapes by bench/train_probe.py ({Path(args.weights).name})"
    elif coco_weights_path(args.arch).exists():
        model = load_coco_model(args.arch, allow_download=False, device=torch.device("cpu")).model
        weights = f"torchvision COCO_V1 ({coco_weights_path(args.arch).name})"
    else:
        model = random_detector(args.arch, 0, calibration)
        weights = "random init, seed 0, calibrated (COCO weights not in the torch hub cache)"
    model = model.eval().to(device)
    fast = FastRetinaNet(copy.deepcopy(model), device)
    fast_name = f"fast ({str(fast.dtype).removeprefix('torch.')})"
    variants = {fast_name: fast}
    if device.type == "cuda":
        variants["fp32 (TF32 convs, as the reference)"] = FastRetinaNet(copy.deepcopy(model), device, half=False)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"

    def reference(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model([x])[0]

    x = bench_images[0].to(device)
    torch.backends.cudnn.benchmark = False  # torchvision's default
    default_refs = [reference(img.to(device)) for img in bench_images]
    ref_ms = timed(reference, x, device, args.iters, args.warmup)
    torch.backends.cudnn.benchmark = True
    ref_bench_ms = timed(reference, x, device, args.iters, args.warmup) if device.type == "cuda" else ref_ms
    fast_ms = timed(fast, x, device, args.iters, args.warmup)
    variant_ms = {fast_name: fast_ms}
    for name, other in variants.items():
        if other is not fast:
            variant_ms[name] = timed(other, x, device, args.iters, args.warmup)
    graph_ms = None
    if fast.use_graph:
        plan = next(iter(fast._plans.values()))
        graph_ms = statistics.median(timed(lambda _: plan.graph.replay(), x, device, args.iters, args.warmup))

    def equivalence_on(fn, images):
        rows = []
        for i, img in enumerate(images):
            img = img.to(device)
            out = fn(img)
            ref = reference(img)
            matched, compared = match_detections_strict(ref, out)
            rows.append(
                {
                    "scene": i + 2,
                    "reference_detections": len(ref["boxes"]),
                    "fast_detections": len(out["boxes"]),
                    "top100_matched": matched,
                    "compared": compared,
                }
            )
        return rows

    equivalence = {name: equivalence_on(fn, bench_images) for name, fn in variants.items()}
    # Control: torchvision's own eager fp32 forward with cuDNN autotuning on, against the same forward with it off
    # (other convolution algorithms, same precision). Where even this differs, the weights' detections are tied.
    refs_iter = iter(default_refs)
    equivalence["control: torchvision eager fp32, cudnn.benchmark on vs off"] = equivalence_on(
        lambda _img: next(refs_iter), bench_images
    )
    # The same check with trained weights: the demo model (real regression collapses duplicates onto objects).
    demo = load_demo_model(device).model
    demo_fast = FastRetinaNet(copy.deepcopy(demo), device)
    demo_rows = []
    for i in range(args.scenes):
        img = image_to_tensor(sample_scene(i).image).to(device)
        with torch.inference_mode():
            ref = demo([img])[0]
        matched, compared = match_detections_strict(ref, demo_fast(img))
        demo_rows.append(
            {"scene": i, "reference_detections": len(ref["boxes"]), "top100_matched": matched, "compared": compared}
        )
    result = {
        "device": gpu,
        "torch": torch.__version__,
        "arch": args.arch,
        "weights": weights,
        "input": "640x480 synthetic scene -> 800x1066 network input (padded 800x1088)",
        "iters": args.iters,
        "torchvision_eager_fp32_ms": {
            "median": round(statistics.median(ref_ms), 3),
            "mean": round(statistics.fmean(ref_ms), 3),
        },
        "torchvision_eager_fp32_cudnn_benchmark_ms": {"median": round(statistics.median(ref_bench_ms), 3)},
        "fast_ms": {"median": round(statistics.median(fast_ms), 3), "mean": round(statistics.fmean(fast_ms), 3)},
        "fast_graph_replay_only_ms": round(graph_ms, 3) if graph_ms is not None else None,
        "variants_median_ms": {k: round(statistics.median(v), 3) for k, v in variant_ms.items()},
        "variants_speedup": {
            k: round(statistics.median(ref_ms) / statistics.median(v), 2) for k, v in variant_ms.items()
        },
        "fast_mode": f"{fast.dtype}, channels_last={fast.memory_format == torch.channels_last}, "
        f"cuda_graph={fast.use_graph}, folded BatchNorms={fast.folded_batchnorms}",
        "speedup_median": round(statistics.median(ref_ms) / statistics.median(fast_ms), 2),
        "equivalence": equivalence,
        "all_equivalent": {
            k: all(e["top100_matched"] == e["compared"] and e["compared"] > 0 for e in rows)
            for k, rows in equivalence.items()
        },
        "demo_model_fp16_equivalence": demo_rows,
    }
    if args.page_check:
        result["page_check"] = page_check()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
