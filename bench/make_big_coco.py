"""A COCO-train-scale instances file for the scan benchmark, generated fast and cached under ``bench/out/``.

The file mimics ``instances_train2017.json``: 118,000 images of COCO's common sizes (640x480, 640x427, portrait
versions, ...), about 860,000 annotations (negative-binomial count per image, mean 7.3, about 1 % of images empty),
COCO's 80 category ids with a long tail (person about a quarter), box sizes drawn so that about 41 % / 34 % / 25 %
are small / medium / large as in COCO, aspect ratios log-normal around 1, about 1 % crowd annotations with
uncompressed RLE, and polygon segmentations of about 25 points, so that the file weighs about 450 MB.

Everything is vectorised with numpy; numbers are formatted into bytes without Python float formatting, and the
file is written in streaming chunks (peak memory stays well under 1 GB).

With ``--objects365`` it writes an Objects365-scale file instead (:func:`write_objects365_scale`: 1.7 M images,
about 25 M boxes, no segmentation, about 3.5 GB), formatted entirely with numpy (no Python loop over records).

Usage: ``python bench/make_big_coco.py [--images 118000] [--seed 0] [--out bench/out/coco_train_scale.json]
[--objects365]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent / "out"
VERSION = 1

# COCO's 80 category ids, names and supercategories (ids 1..90 with gaps), as 'id:name:supercategory;'.
_CATEGORY_TABLE = (
    "1:person:person;2:bicycle:vehicle;3:car:vehicle;4:motorcycle:vehicle;5:airplane:vehicle;6:bus:vehicle;"
    "7:train:vehicle;8:truck:vehicle;9:boat:vehicle;10:traffic light:outdoor;11:fire hydrant:outdoor;"
    "13:stop sign:outdoor;14:parking meter:outdoor;15:bench:outdoor;16:bird:animal;17:cat:animal;18:dog:animal;"
    "19:horse:animal;20:sheep:animal;21:cow:animal;22:elephant:animal;23:bear:animal;24:zebra:animal;"
    "25:giraffe:animal;27:backpack:accessory;28:umbrella:accessory;31:handbag:accessory;32:tie:accessory;"
    "33:suitcase:accessory;34:frisbee:sports;35:skis:sports;36:snowboard:sports;37:sports ball:sports;"
    "38:kite:sports;39:baseball bat:sports;40:baseball glove:sports;41:skateboard:sports;42:surfboard:sports;"
    "43:tennis racket:sports;44:bottle:kitchen;46:wine glass:kitchen;47:cup:kitchen;48:fork:kitchen;"
    "49:knife:kitchen;50:spoon:kitchen;51:bowl:kitchen;52:banana:food;53:apple:food;54:sandwich:food;"
    "55:orange:food;56:broccoli:food;57:carrot:food;58:hot dog:food;59:pizza:food;60:donut:food;61:cake:food;"
    "62:chair:furniture;63:couch:furniture;64:potted plant:furniture;65:bed:furniture;67:dining table:furniture;"
    "70:toilet:furniture;72:tv:electronic;73:laptop:electronic;74:mouse:electronic;75:remote:electronic;"
    "76:keyboard:electronic;77:cell phone:electronic;78:microwave:appliance;79:oven:appliance;"
    "80:toaster:appliance;81:sink:appliance;82:refrigerator:appliance;84:book:indoor;85:clock:indoor;"
    "86:vase:indoor;87:scissors:indoor;88:teddy bear:indoor;89:hair drier:indoor;90:toothbrush:indoor"
)


def _categories() -> list[tuple[int, str, str]]:
    out = []
    for item in _CATEGORY_TABLE.split(";"):
        i, name, sup = item.split(":")
        out.append((int(i), name, sup))
    return out


# (width, height, probability) of COCO's most common image sizes; the rest get a random short side.
_SIZES = (
    (640, 480, 0.33),
    (640, 427, 0.22),
    (480, 640, 0.08),
    (427, 640, 0.07),
    (640, 426, 0.04),
    (500, 375, 0.03),
    (640, 360, 0.03),
    (612, 612, 0.02),
    (640, 640, 0.02),
)


def _format_fixed2(values: np.ndarray, sep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Format non-negative numbers with 2 decimals ("239.97") followed by a separator byte (0 = none).

    Returns:
        (flat uint8 text, (N,) int64 byte length of each number including its separator).
    """
    cents = np.round(values * 100.0).astype(np.int64)
    q, f = np.divmod(cents, 100)
    digits = np.empty((len(q), 9), np.uint8)
    for k in range(5):
        digits[:, 4 - k] = 48 + (q // 10**k) % 10
    digits[:, 5] = ord(".")
    digits[:, 6] = 48 + f // 10
    digits[:, 7] = 48 + f % 10
    digits[:, 8] = sep
    keep = np.ones(digits.shape, bool)
    for k in range(1, 5):
        keep[:, 4 - k] = q >= 10**k
    keep[:, 8] = sep != 0
    return digits[keep], keep.sum(axis=1)


def _images_json(widths: np.ndarray, heights: np.ndarray, ids: np.ndarray) -> bytes:
    parts = []
    for w, h, i in zip(widths.tolist(), heights.tolist(), ids.tolist(), strict=True):
        parts.append(
            f'{{"license": {i % 8 + 1}, "file_name": "{i:012d}.jpg", '
            f'"coco_url": "http://images.example.org/train2017/{i:012d}.jpg", "height": {h}, "width": {w}, '
            f'"date_captured": "2013-11-14 17:02:52", "flickr_url": "http://farm.example.org/{i}_z.jpg", "id": {i}}}'
        )
    return ", ".join(parts).encode()


def _sample_layout(rng: np.random.Generator, n_images: int) -> dict[str, np.ndarray]:
    probs = np.array([p for _, _, p in _SIZES])
    kind = rng.choice(len(_SIZES) + 1, size=n_images, p=np.append(probs, 1 - probs.sum()))
    widths = np.empty(n_images, np.int64)
    heights = np.empty(n_images, np.int64)
    for k, (w, h, _) in enumerate(_SIZES):
        widths[kind == k] = w
        heights[kind == k] = h
    other = kind == len(_SIZES)
    short = rng.integers(240, 640, size=other.sum())
    portrait = rng.uniform(size=other.sum()) < 0.25
    widths[other] = np.where(portrait, short, 640)
    heights[other] = np.where(portrait, 640, short)
    # Boxes per image: 1 + negative binomial (mean 7.3 overall, long tail), about 1 % of images empty.
    counts = 1 + rng.negative_binomial(1.4, 1.4 / (1.4 + 6.3), size=n_images)
    counts = np.minimum(counts, 120)
    counts[rng.uniform(size=n_images) < 0.009] = 0
    return {"widths": widths, "heights": heights, "counts": counts}


def _sample_boxes(rng: np.random.Generator, w_img: np.ndarray, h_img: np.ndarray) -> dict[str, np.ndarray]:
    n = len(w_img)
    # sqrt(area) log-normal: P(< 32) = 0.41, P(< 96) = 0.75 as in COCO's size split.
    side = np.exp(rng.normal(3.75, 1.21, size=n))
    aspect = np.exp(rng.normal(0.12, 0.55, size=n))  # h / w
    bw = np.clip(side / np.sqrt(aspect), 1.0, w_img)
    bh = np.clip(side * np.sqrt(aspect), 1.0, h_img)
    x = rng.uniform(size=n) * (w_img - bw)
    y = rng.uniform(size=n) * (h_img - bh)
    # Round like COCO (2 decimals) without leaving the image.
    x, y = np.round(x, 2), np.round(y, 2)
    bw = np.round(np.minimum(bw, w_img - x), 2)
    bh = np.round(np.minimum(bh, h_img - y), 2)
    return {"x": x, "y": y, "w": bw, "h": bh}


def _polygons(rng: np.random.Generator, box: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Polygon text of every annotation: (flat uint8 bytes, (N + 1,) byte offsets)."""
    side = np.sqrt(box["w"] * box["h"])
    npts = np.clip((7 + side / 4.2).astype(np.int64), 6, 100)
    total = int(npts.sum())
    owner = np.repeat(np.arange(len(npts)), npts)
    first = np.zeros(len(npts) + 1, np.int64)
    np.cumsum(npts, out=first[1:])
    k = np.arange(total) - first[owner]
    t = 2 * np.pi * (k + rng.uniform(-0.3, 0.3, size=total)) / npts[owner]
    r = rng.uniform(0.75, 1.0, size=total)
    cx = box["x"][owner] + box["w"][owner] / 2
    cy = box["y"][owner] + box["h"][owner] / 2
    px = np.clip(cx + r * np.cos(t) * box["w"][owner] / 2, box["x"][owner], box["x"][owner] + box["w"][owner])
    py = np.clip(cy + r * np.sin(t) * box["h"][owner] / 2, box["y"][owner], box["y"][owner] + box["h"][owner])
    values = np.stack([px, py], axis=1).reshape(-1)
    last = np.zeros(2 * total, bool)
    last[2 * first[1:] - 1] = True
    sep = np.where(last, 0, ord(",")).astype(np.uint8)
    text, lengths = _format_fixed2(values, sep)
    per_ann = np.add.reduceat(lengths, 2 * first[:-1]) if total else np.zeros(len(npts), np.int64)
    offsets = np.zeros(len(npts) + 1, np.int64)
    np.cumsum(per_ann, out=offsets[1:])
    return text, offsets


def write_big_coco(path: str | Path, n_images: int = 118_000, seed: int = 0, *, chunk: int = 8000) -> dict[str, int]:
    """Write the COCO-scale file to ``path`` (atomically) and return its counts.

    Returns:
        ``{"images": ..., "annotations": ..., "crowd": ..., "bytes": ...}``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    layout = _sample_layout(rng, n_images)
    image_ids = np.sort(rng.choice(600_000, size=n_images, replace=False)) + 9
    cats = _categories()
    cat_ids = np.array([c[0] for c in cats])
    weights = 1.0 / (np.arange(len(cats)) + 1.0) ** 0.9
    weights[0] = 3.2 * weights[1:].sum() / 9.0  # person: about a quarter of all boxes
    weights /= weights.sum()
    tmp = path.with_suffix(".tmp")
    n_ann = n_crowd = 0
    ann_id = 1
    with open(tmp, "wb") as f:
        f.write(
            b'{"info": {"description": "FocalScope COCO-train-scale benchmark file", "version": "1.0", '
            b'"year": 2026, "contributor": "bench/make_big_coco.py"}, "licenses": ['
            + b", ".join(
                f'{{"url": "http://example.org/l{i}", "id": {i}, "name": "L{i}"}}'.encode() for i in range(1, 9)
            )
            + b'], "images": ['
        )
        f.write(_images_json(layout["widths"], layout["heights"], image_ids))
        f.write(b'], "annotations": [')
        first = True
        for start in range(0, n_images, chunk):
            sl = slice(start, min(n_images, start + chunk))
            counts = layout["counts"][sl]
            owner = np.repeat(np.arange(sl.start, sl.stop), counts)
            m = len(owner)
            if m == 0:
                continue
            w_img = layout["widths"][owner].astype(np.float64)
            h_img = layout["heights"][owner].astype(np.float64)
            box = _sample_boxes(rng, w_img, h_img)
            crowd = (rng.uniform(size=m) < 0.021) & (box["w"] * box["h"] > 2000)
            text, offsets = _polygons(rng, box)
            blob = text.tobytes()
            cat = cat_ids[rng.choice(len(cats), size=m, p=weights)]
            seg_area = np.round(box["w"] * box["h"] * rng.uniform(0.45, 0.85, size=m), 5)
            bx, by, bw, bh = (box[key].tolist() for key in ("x", "y", "w", "h"))
            areas, cat_l, iid = seg_area.tolist(), cat.tolist(), image_ids[owner].tolist()
            pieces = []
            for k in range(m):
                if crowd[k]:
                    hh, ww = int(h_img[k]), int(w_img[k])
                    runs = rng.integers(1, 400, size=int(rng.integers(20, 160)))
                    seg = f'{{"counts": [{", ".join(map(str, runs.tolist()))}], "size": [{hh}, {ww}]}}'
                else:
                    seg = "[[" + blob[offsets[k] : offsets[k + 1]].decode() + "]]"
                pieces.append(
                    f'{"" if first and k == 0 else ", "}{{"segmentation": {seg}, "area": {areas[k]!r}, '
                    f'"iscrowd": {int(crowd[k])}, "image_id": {iid[k]}, '
                    f'"bbox": [{bx[k]!r}, {by[k]!r}, {bw[k]!r}, {bh[k]!r}], '
                    f'"category_id": {cat_l[k]}, "id": {ann_id + k}}}'
                )
            first = False
            f.write("".join(pieces).encode())
            ann_id += m
            n_ann += m
            n_crowd += int(crowd.sum())
        f.write(b'], "categories": [')
        f.write(", ".join(f'{{"supercategory": "{s}", "id": {i}, "name": "{n}"}}' for i, n, s in cats).encode())
        f.write(b"]}")
    os.replace(tmp, path)
    return {"images": n_images, "annotations": n_ann, "crowd": n_crowd, "bytes": path.stat().st_size}


def _format_int(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Format non-negative integers (< 10**15): (flat uint8 text, (N,) int64 byte length of each)."""
    v = np.asarray(values, np.int64)
    digits = np.empty((len(v), 15), np.uint8)
    for k in range(15):
        digits[:, 14 - k] = 48 + (v // 10**k) % 10
    keep = np.ones(digits.shape, bool)
    for k in range(1, 15):
        keep[:, 14 - k] = v >= 10**k
    return digits[keep], keep.sum(axis=1)


def _records(fields: list[bytes | tuple[np.ndarray, np.ndarray]], n: int) -> bytes:
    """Concatenate ``n`` records whose pieces are constants (bytes) or formatted columns ((text, lengths)), one
    after the other, without a Python loop over records."""
    lengths = np.zeros((n, len(fields)), np.int64)
    for f, field in enumerate(fields):
        lengths[:, f] = len(field) if isinstance(field, bytes) else field[1]
    ends = np.cumsum(lengths.reshape(-1)).reshape(n, len(fields))
    out = np.empty(int(ends[-1, -1]) if n else 0, np.uint8)
    for f, field in enumerate(fields):
        start = ends[:, f] - lengths[:, f]
        if isinstance(field, bytes):
            const = np.frombuffer(field, np.uint8)
            out[(start[:, None] + np.arange(len(const))[None, :]).reshape(-1)] = np.tile(const, n)
        else:
            text, ln = field
            src_start = np.cumsum(ln) - ln
            out[np.repeat(start - src_start, ln) + np.arange(len(text))] = text
    return out.tobytes()


def write_objects365_scale(
    path: str | Path, n_images: int = 1_700_000, seed: int = 0, *, chunk: int = 50_000
) -> dict[str, int]:
    """Write an Objects365-scale file (no segmentation) to ``path`` (atomically, streamed) and return its counts.

    Objects365 v2 train has about 1.7 M images and 25 M boxes (about 15 per image) of 365 categories, no masks.
    Here: COCO's image sizes, 1 + negative binomial boxes per image (mean about 14.7, capped at 200), 365 category
    ids with a long tail, COCO's box-size distribution, about 0.5 % crowd boxes, boxes with 2 decimals.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    layout = _sample_layout(rng, n_images)
    layout["counts"] = np.minimum(1 + rng.negative_binomial(2.0, 2.0 / (2.0 + 13.7), size=n_images), 200)
    image_ids = np.arange(1, n_images + 1, dtype=np.int64)
    weights = 1.0 / (np.arange(365) + 1.0) ** 1.1
    weights /= weights.sum()
    tmp = path.with_suffix(".tmp")
    n_ann = n_crowd = 0
    ann_id = 1
    with open(tmp, "wb") as f:
        f.write(b'{"info": {"description": "FocalScope Objects365-scale benchmark file"}, "images": [')
        for start in range(0, n_images, chunk):
            sl = slice(start, min(n_images, start + chunk))
            f.write(b", " if start else b"")
            f.write(_images_json(layout["widths"][sl], layout["heights"][sl], image_ids[sl]))
        f.write(b'], "annotations": [')
        for start in range(0, n_images, chunk):
            sl = slice(start, min(n_images, start + chunk))
            owner = np.repeat(np.arange(sl.start, sl.stop), layout["counts"][sl])
            m = len(owner)
            box = _sample_boxes(rng, layout["widths"][owner].astype(np.float64), layout["heights"][owner].astype(float))
            crowd = ((rng.uniform(size=m) < 0.005) & (box["w"] * box["h"] > 2000)).astype(np.int64)
            cat = 1 + rng.choice(365, size=m, p=weights)
            none = np.zeros(m, np.uint8)
            comma = np.full(m, ord(","), np.uint8)
            fields = [
                b'{"id": ', _format_int(np.arange(ann_id, ann_id + m)),
                b', "image_id": ', _format_int(image_ids[owner]),
                b', "category_id": ', _format_int(cat),
                b', "bbox": [', _format_fixed2(box["x"], comma), b" ", _format_fixed2(box["y"], comma),
                b" ", _format_fixed2(box["w"], comma), b" ", _format_fixed2(box["h"], none),
                b'], "area": ', _format_int(np.round(box["w"] * box["h"]).astype(np.int64)),
                b', "iscrowd": ', _format_int(crowd), b', "isfake": 0}, ',
            ]  # fmt: skip
            blob = _records(fields, m)
            if start + chunk >= n_images:
                blob = blob[:-2]  # no separator after the last record
            f.write(blob)
            ann_id += m
            n_ann += m
            n_crowd += int(crowd.sum())
        f.write(b'], "categories": [')
        f.write(", ".join(f'{{"id": {i}, "name": "object{i}"}}' for i in range(1, 366)).encode())
        f.write(b"]}")
    os.replace(tmp, path)
    return {"images": n_images, "annotations": n_ann, "crowd": n_crowd, "bytes": path.stat().st_size}


def cached_big_coco(n_images: int = 118_000, seed: int = 0, out_dir: str | Path = OUT_DIR) -> Path:
    """Path of the cached file for ``(n_images, seed)``, generated on first use."""
    path = Path(out_dir) / f"coco_scale_v{VERSION}_{n_images}_{seed}.json"
    if not path.exists():
        write_big_coco(path, n_images, seed)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--objects365", action="store_true", help="Objects365 scale: no segmentation, ~15 boxes/image")
    args = parser.parse_args(argv)
    kind = "o365" if args.objects365 else "coco"
    out = args.out or OUT_DIR / f"{kind}_scale_v{VERSION}_{args.images}_{args.seed}.json"
    t0 = time.perf_counter()
    info = (write_objects365_scale if args.objects365 else write_big_coco)(out, args.images, args.seed)
    dt = time.perf_counter() - t0
    print(
        f"wrote {out}: {info['images']:,} images, {info['annotations']:,} annotations ({info['crowd']:,} crowd), "
        f"{info['bytes'] / 1e6:.0f} MB in {dt:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
