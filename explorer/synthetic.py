"""Deterministic synthetic scenes and COCO-format datasets.

The app ships no images: its sample dataset is generated here from a fixed seed, identical on every machine.
A scene is a textured, noisy RGB background with filled shapes of several classes drawn on it; object sizes run
from tiny (about 8 px) to large, and the class frequencies follow a long tail.

Example:
    >>> image, anns = make_scene(0, SceneConfig(width=64, height=48, n_objects=(2, 2)))
    >>> image.shape, image.dtype, len(anns)
    ((48, 64, 3), dtype('uint8'), 2)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from explorer.boxes import xywh_to_xyxy

#: Shape classes, in category-id order. Ids start at 1 as in COCO.
CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "ellipse",
    "cross",
    "star",
    "ring",
    "diamond",
)

#: Version of the sample-dataset recipe. Bump it whenever the output changes, so stale caches are not reused.
SAMPLE_VERSION = 1
SAMPLE_SEED = 20261123
SAMPLE_IMAGES = 200


@dataclass(frozen=True)
class SceneConfig:
    """How a scene is drawn.

    Attributes:
        width, height: image size in pixels.
        n_objects: inclusive (min, max) number of objects per scene.
        min_size, max_size: the object's longer side in pixels, drawn log-uniformly between them, then skewed
            towards small objects by ``small_bias`` (1 = log-uniform, larger = more small objects).
        small_bias: exponent applied to the uniform draw before mapping it to log size.
        class_weights: relative frequency per class (len(CLASS_NAMES)); ``None`` gives a long tail
            with weights proportional to 1 / (rank + 1) ** tail_power.
        tail_power: steepness of the default long tail (0 = balanced).
        max_overlap: largest share of the smaller box that another object may cover (placement retries
            otherwise), so objects stay visible and their boxes tight.
        noise_std: standard deviation of the per-pixel Gaussian noise, in grey levels.
    """

    width: int = 640
    height: int = 480
    n_objects: tuple[int, int] = (3, 14)
    min_size: float = 8.0
    max_size: float = 320.0
    small_bias: float = 1.6
    class_weights: tuple[float, ...] | None = None
    tail_power: float = 1.3
    max_overlap: float = 0.15
    noise_std: float = 8.0

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size must be at least 16x16, got {self.width}x{self.height}")
        lo, hi = self.n_objects
        if lo < 0 or hi < lo:
            raise ValueError(f"n_objects must be (min, max) with 0 <= min <= max, got {self.n_objects}")
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.class_weights is not None and len(self.class_weights) != len(CLASS_NAMES):
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for {len(CLASS_NAMES)} classes")

    def weights(self) -> np.ndarray:
        """Normalised class probabilities, (C,) float64."""
        if self.class_weights is not None:
            w = np.asarray(self.class_weights, dtype=np.float64)
        else:
            w = 1.0 / (np.arange(len(CLASS_NAMES)) + 1.0) ** self.tail_power
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("class_weights must be non-negative with a positive sum")
        return w / w.sum()


def _background(rng: np.random.Generator, height: int, width: int, noise_std: float) -> np.ndarray:
    """A textured background: colour gradient, blurred blotches, stripes and pixel noise. (H, W, 3) float32."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    tilt = rng.uniform(-60, 60, size=(2, 3)).astype(np.float32)
    img = base + (xx / width)[..., None] * tilt[0] + (yy / height)[..., None] * tilt[1]
    # Low-frequency blotches: coarse noise, upsampled smoothly.
    coarse = 25 * rng.standard_normal((max(2, height // 32), max(2, width // 32), 3), dtype=np.float32)
    img += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    # Faint stripes of a random orientation, a texture that is not an object.
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6, 40)
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period))
    img += (stripes * rng.uniform(3, 12))[..., None]
    img += np.float32(noise_std) * rng.standard_normal(img.shape, dtype=np.float32)
    return img


def _shape_polygon(kind: str, cx: float, cy: float, w: float, h: float, angle: float) -> list[np.ndarray]:
    """Outline(s) of a shape as float polygons; rings return [outer, inner]."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    if kind in ("circle", "ellipse", "ring"):
        pts = np.stack([np.cos(t) * w / 2, np.sin(t) * h / 2], axis=1)
    elif kind == "square":
        pts = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    elif kind == "triangle":
        pts = np.array([[0, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    elif kind == "diamond":
        pts = np.array([[0, -h / 2], [w / 2, 0], [0, h / 2], [-w / 2, 0]])
    elif kind == "cross":
        a, b = w / 2, w / 6
        c, d = h / 2, h / 6
        pts = np.array(
            [[-b, -c], [b, -c], [b, -d], [a, -d], [a, d], [b, d], [b, c], [-b, c], [-b, d], [-a, d], [-a, -d], [-b, -d]]
        )
    elif kind == "star":
        k = np.arange(10)
        r = np.where(k % 2 == 0, 1.0, 0.45)
        ang = -np.pi / 2 + k * np.pi / 5
        pts = np.stack([np.cos(ang) * r * w / 2, np.sin(ang) * r * h / 2], axis=1)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outer = pts @ rot.T + [cx, cy]
    if kind == "ring":
        return [outer, (pts * 0.55) @ rot.T + [cx, cy]]
    return [outer]


def _overlap_xyxy(a: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over the smaller of the two areas: 1 when one box lies inside the other."""
    if len(boxes) == 0:
        return np.zeros(0)
    ix = np.clip(np.minimum(a[2], boxes[:, 2]) - np.maximum(a[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], boxes[:, 3]) - np.maximum(a[1], boxes[:, 1]), 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return ix * iy / np.minimum(area, areas)


def make_scene(seed: int, config: SceneConfig | None = None) -> tuple[np.ndarray, list[dict]]:
    """Draw one scene.

    Args:
        seed: the scene's seed; the same seed and config give the same pixels and boxes on every machine.
        config: how to draw it (``SceneConfig()`` by default: 640x480, 3-14 objects, 8-320 px, long tail).

    Returns:
        ``(image, annotations)``: image is (H, W, 3) uint8 RGB; annotations are COCO-style dicts with
        ``bbox`` (xywh, float, tight around the drawn pixels), ``area`` (bbox area), ``iscrowd`` 0,
        ``category_id`` (1-based) and ``segmentation`` (polygons).
    """
    cfg = config or SceneConfig()
    rng = np.random.default_rng(seed)
    height, width = cfg.height, cfg.width
    img = _background(rng, height, width, cfg.noise_std)
    probs = cfg.weights()
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    log_lo, log_hi = np.log(cfg.min_size), np.log(min(cfg.max_size, 0.9 * min(width, height)))
    placed = np.zeros((0, 4))
    annotations: list[dict] = []
    for _ in range(n):
        for _attempt in range(30):
            size = float(np.exp(log_lo + (log_hi - log_lo) * rng.uniform() ** cfg.small_bias))
            aspect = float(np.exp(rng.uniform(-0.6, 0.6)))  # h / w
            w, h = size / max(1.0, aspect), size / max(1.0, 1.0 / aspect)
            cls = int(rng.choice(len(probs), p=probs))
            kind = CLASS_NAMES[cls]
            if kind in ("circle", "square"):
                h = w = max(w, h)
            angle = float(rng.uniform(-0.3, 0.3)) if kind not in ("circle", "ring", "ellipse") else 0.0
            cx = float(rng.uniform(w / 2, width - w / 2))
            cy = float(rng.uniform(h / 2, height - h / 2))
            polys = _shape_polygon(kind, cx, cy, w, h, angle)
            outer = polys[0]
            x1, y1 = np.clip(outer.min(axis=0), 0, [width, height])
            x2, y2 = np.clip(outer.max(axis=0), 0, [width, height])
            box = np.array([x1, y1, x2, y2])
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            if (_overlap_xyxy(box, placed) > cfg.max_overlap).any():
                continue
            colour = rng.uniform(0, 255, size=3)
            # Keep the object visible: push its colour away from the local background.
            local = img[int(cy), int(cx)]
            if np.abs(colour - local).sum() < 150:
                colour = np.where(local > 127, colour * 0.35, 255 - (255 - colour) * 0.35)
            # Rasterise inside the shape's own window only (x0, y0 = its top-left pixel).
            x0, y0 = int(x1), int(y1)
            win_w, win_h = int(np.ceil(x2)) - x0 + 1, int(np.ceil(y2)) - y0 + 1
            shift = 4  # sub-pixel precision for cv2.fillPoly
            pts = [np.round((p - [x0, y0]) * (1 << shift)).astype(np.int32) for p in polys]
            mask = np.zeros((win_h, win_w), np.uint8)
            cv2.fillPoly(mask, [pts[0]], 1, lineType=cv2.LINE_8, shift=shift)
            if len(pts) > 1:
                cv2.fillPoly(mask, [pts[1]], 0, lineType=cv2.LINE_8, shift=shift)
            ys, xs = np.nonzero(mask)
            ys, xs = ys + y0, xs + x0
            inside = (ys < height) & (xs < width)
            ys, xs = ys[inside], xs[inside]
            if len(xs) == 0:
                continue
            shade = 1.0 + 0.15 * (ys - cy) / max(h, 1.0)  # a little shading so shapes are not flat
            img[ys, xs] = colour * shade[:, None] + rng.normal(0, cfg.noise_std / 2, size=(len(xs), 3))
            bx1, by1, bx2, by2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
            placed = np.vstack([placed, [bx1, by1, bx2, by2]])
            seg = [np.round(np.clip(p, 0, [width, height]), 2).reshape(-1).tolist() for p in polys[:1]]
            annotations.append(
                {
                    "bbox": [bx1, by1, bx2 - bx1, by2 - by1],
                    "area": (bx2 - bx1) * (by2 - by1),
                    "iscrowd": 0,
                    "category_id": cls + 1,
                    "segmentation": seg,
                }
            )
            break
    return np.clip(img, 0, 255).astype(np.uint8), annotations


def categories() -> list[dict]:
    """COCO ``categories`` entries: ``[{"id": 1, "name": "circle", "supercategory": "shape"}, ...]``."""
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)]


def make_dataset(n_images: int, seed: int, config: SceneConfig | None = None) -> tuple[dict, list[np.ndarray]]:
    """Build a COCO dataset in memory.

    Returns:
        ``(coco, images)``: the COCO dict (``images``, ``annotations``, ``categories``; image ``file_name`` is
        ``"%06d.jpg" % id``) and the list of (H, W, 3) uint8 RGB arrays in the same order.
    """
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    cfg = config or SceneConfig()
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_images)
    scenes = [make_scene(int(s), cfg) for s in seeds]
    info = {"description": "FocalScope synthetic shapes", "version": str(SAMPLE_VERSION), "seed": seed}
    return scenes_to_coco([anns for _, anns in scenes], cfg, info=info), [arr for arr, _ in scenes]


def scenes_to_coco(
    scene_annotations: Sequence[Sequence[dict]], config: SceneConfig, *, info: dict | None = None
) -> dict:
    """The COCO dict of scenes drawn with ``config``: image ids 1..n, ``file_name`` ``"%06d.jpg" % id``,
    annotation ids 1.. in scene order, the shape categories."""
    coco: dict = {"info": info} if info is not None else {}
    coco.update(images=[], annotations=[], categories=categories())
    ann_id = 1
    for i, anns in enumerate(scene_annotations):
        image_id = i + 1
        coco["images"].append(
            {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": config.width, "height": config.height}
        )
        for ann in anns:
            coco["annotations"].append({"id": ann_id, "image_id": image_id, **ann})
            ann_id += 1
    return coco


def scene_targets(annotations: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """A scene's boxes (M, 4) float32 xyxy (:func:`explorer.boxes.xywh_to_xyxy`) and (M,) int64 category ids."""
    boxes = xywh_to_xyxy([a["bbox"] for a in annotations])
    return boxes, np.array([a["category_id"] for a in annotations], np.int64)


def write_dataset(
    out_dir: str | Path, n_images: int, seed: int, config: SceneConfig | None = None, *, quality: int = 92
) -> Path:
    """Write a COCO dataset folder: ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``.

    Returns the path of ``annotations.json``. The folder is written atomically enough for a cache: the
    annotation file is written last, so its presence means the images are complete.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    coco, arrays = make_dataset(n_images, seed, config)
    for info, arr in zip(coco["images"], arrays, strict=True):
        Image.fromarray(arr).save(out / "images" / info["file_name"], quality=quality, subsampling=0)
    ann_path = out / "annotations.json"
    tmp = ann_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(coco))
    os.replace(tmp, ann_path)
    return ann_path


def dataset_digest(coco: dict, arrays: list[np.ndarray]) -> str:
    """SHA-256 over the annotation JSON (canonical form) and the raw pixels: equal on every machine."""
    h = hashlib.sha256(json.dumps(coco, sort_keys=True).encode())
    for arr in arrays:
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def cache_root() -> Path:
    """Where generated data is cached: ``$FOCALSCOPE_CACHE``, else ``~/.cache/focalscope``."""
    env = os.environ.get("FOCALSCOPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "focalscope"


def sample_dataset(root: str | Path | None = None) -> Path:
    """The built-in sample dataset (200 long-tailed scenes with many small objects), generated on first use.

    Returns the path of its ``annotations.json``; the images are in the sibling ``images/`` folder.
    """
    folder = Path(root) if root is not None else cache_root() / f"sample-v{SAMPLE_VERSION}"
    ann = folder / "annotations.json"
    if ann.exists():
        return ann
    # Written beside, then renamed into place: two processes (the app and the CLI, or parallel test workers)
    # generating it at once never see a half-written folder; the later rename finds it there and is dropped.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write_dataset(staging, SAMPLE_IMAGES, SAMPLE_SEED)
        if folder.exists() and not ann.exists():  # left half-written by an older version: replace it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            staging.rename(folder)
        except OSError:
            if not ann.exists():  # not another process's finished copy either
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ann


def main(argv: list[str] | None = None) -> int:
    """``python -m explorer.synthetic OUT_DIR [--images N] [--seed S] [--width W --height H]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m explorer.synthetic", description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=SAMPLE_IMAGES)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--min-size", type=float, default=8.0)
    parser.add_argument("--max-size", type=float, default=320.0)
    parser.add_argument("--tail-power", type=float, default=1.3)
    args = parser.parse_args(argv)
    try:
        cfg = SceneConfig(
            width=args.width,
            height=args.height,
            min_size=args.min_size,
            max_size=args.max_size,
            tail_power=args.tail_power,
        )
        path = write_dataset(args.out_dir, args.images, args.seed, cfg)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {args.images} images and {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
