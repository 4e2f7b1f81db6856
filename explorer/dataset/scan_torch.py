"""The scan's torch path for a CUDA device: torchvision's own arithmetic on a dense IoU tensor, batched.

Images are grouped by input size (they share their anchors) and by number of boxes (little padding); a batch
computes the (B, K, N) IoU exactly as ``torchvision.ops.box_iou`` does (float32, ``inter / (area1 + area2 -
inter)``), then ``Matcher``'s rules: per anchor the max over GTs and its first argmax, per GT its max and the
anchors tied with it (low-quality promotion). Only counts leave the device. On a GPU this is simpler than the CPU
path's candidate search and fast enough (the work is a few passes over about 1.5e11 IoU values for COCO train).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from explorer.boxes import area, iou_from_areas
from explorer.dataset.scan_geometry import size_groups

#: IoU elements (B * K * N) per batch: about 4 bytes each, times a few live intermediates.
_BATCH_ELEMENTS = 1 << 27


def _anchors_for(geo: Any, image: int, torch: Any, device: Any) -> tuple[Any, Any]:
    """All anchors (N, 4) float32 and their level index (N,) of the input size of image ``image``, built with the
    generator's float32 arithmetic (shift + cell anchor)."""
    parts, levels = [], []
    g, u = geo.sizes, int(geo.size_index[image])
    for lv, cells in enumerate(geo.cells):
        gh, gw = int(g.gh[u, lv]), int(g.gw[u, lv])
        sh, sw = int(g.sh[u, lv]), int(g.sw[u, lv])
        oy, ox = float(g.oy[u, lv]), float(g.ox[u, lv])
        sx = torch.tensor((np.arange(gw, dtype=np.float64) * sw + ox).astype(np.float32), device=device)
        sy = torch.tensor((np.arange(gh, dtype=np.float64) * sh + oy).astype(np.float32), device=device)
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=1)
        c = torch.tensor(cells, dtype=torch.float32, device=device)
        anchors = (shifts[:, None, :] + c[None, :, :]).reshape(-1, 4)
        parts.append(anchors)
        levels.append(torch.full((len(anchors),), lv, dtype=torch.int64, device=device))
    return torch.cat(parts), torch.cat(levels)


def scan_torch(
    boxes: np.ndarray,
    b_img: np.ndarray,
    K: np.ndarray,
    geo: Any,
    cfg: Any,
    res: dict[str, np.ndarray],
    box_pos: np.ndarray,
    box_best: np.ndarray,
    box_lq: np.ndarray,
    *,
    progress: Callable[[int, int], None] | None = None,
    device: str = "cuda",
) -> None:
    """Fill ``res`` (per image / per level counts) and the per-box arrays in place.

    Args:
        boxes: (G, 4) float32 input-scale non-crowd boxes, grouped by image (file order within an image).
        b_img: (G,) image index of each box; K: (I,) boxes per image.
        geo: the scan's :class:`explorer.dataset.scan_geometry.Geometry`; cfg: the ``ScanConfig``.
        device: a torch device string ("cuda", or "cpu" for tests).
    """
    import torch

    dev = torch.device(device)
    n = len(K)
    L = geo.num_levels
    first = np.concatenate([[0], np.cumsum(K)])
    pos_t, neg_t = float(cfg.pos_thresh), float(cfg.neg_thresh)
    boxes_t = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).to(dev)
    size_key = size_groups(geo.input_h, geo.input_w)[1]
    done = 0
    order = np.lexsort((K, size_key))
    groups = np.split(order, np.flatnonzero(np.diff(size_key[order])) + 1) if n else []
    with torch.no_grad():
        for group in groups:
            row = int(group[0])
            anchors, levels = _anchors_for(geo, row, torch, dev)
            N = len(anchors)
            area_a = area(anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3])
            empty = group[K[group] == 0]
            res["easy"][empty] = N
            res["level_easy"][empty] = np.diff(geo.sizes.level_start[geo.size_index[row]])
            rest = group[K[group] > 0]
            s = 0
            while s < len(rest):
                kmax = int(K[rest[s]])
                b = max(1, _BATCH_ELEMENTS // max(1, kmax * N))
                # images in rest are sorted by K: the batch's largest K is its last image's
                while b > 1 and int(K[rest[min(len(rest), s + b) - 1]]) * b * N > _BATCH_ELEMENTS:
                    b //= 2
                batch = rest[s : s + b]
                s += len(batch)
                _batch(batch, boxes_t, first, K, anchors, area_a, levels, L, pos_t, neg_t, cfg, res, box_pos,
                       box_best, box_lq, torch, dev)  # fmt: skip
            done += len(group)
            if progress is not None:
                progress(done, n)


def _batch(
    batch: np.ndarray, boxes_t: Any, first: np.ndarray, K: np.ndarray, anchors: Any, area_a: Any, levels: Any,
    L: int, pos_t: float, neg_t: float, cfg: Any, res: dict, box_pos: np.ndarray, box_best: np.ndarray,
    box_lq: np.ndarray, torch: Any, dev: Any,
) -> None:  # fmt: skip
    B = len(batch)
    kmax = int(K[batch].max())
    # gather the batch's boxes into (B, kmax, 4); padding rows (index -1) are masked out below
    counts = K[batch]
    idx = np.full((B, kmax), -1, np.int64)
    for j in range(kmax):
        has = counts > j
        idx[has, j] = first[batch[has]] + j
    valid = torch.from_numpy(idx >= 0).to(dev)
    gt = boxes_t[torch.from_numpy(np.maximum(idx, 0)).to(dev)]  # (B, kmax, 4)
    # torchvision's box_iou, float32, same operation order
    area_g = area(gt[..., 0], gt[..., 1], gt[..., 2], gt[..., 3])  # (B, k)
    w = torch.minimum(gt[..., 2, None], anchors[:, 2]) - torch.maximum(gt[..., 0, None], anchors[:, 0])
    h = torch.minimum(gt[..., 3, None], anchors[:, 3]) - torch.maximum(gt[..., 1, None], anchors[:, 1])
    inter = w.clamp_(min=0) * h.clamp_(min=0)
    del w, h
    iou = iou_from_areas(inter, area_g[..., None], area_a)  # (B, k, N)
    del inter
    iou.masked_fill_(~valid[..., None], -1.0)
    matched_vals, argmax = iou.max(dim=1)  # (B, N): first GT on ties
    gt_best = iou.max(dim=2).values  # (B, k)
    if cfg.low_quality:
        promoted = ((iou == gt_best[..., None]) & valid[..., None]).any(dim=1)
    else:
        promoted = torch.zeros_like(matched_vals, dtype=torch.bool)
    del iou
    positive = (matched_vals >= pos_t) | promoted
    ignored = ~positive & (matched_vals >= neg_t)
    hard = ~positive & ~ignored & (matched_vals > 0)
    easy = ~positive & ~ignored & (matched_vals <= 0)
    bl = torch.arange(B, device=dev)[:, None] * L + levels[None, :]  # (B, N)

    def per_level(mask: Any) -> np.ndarray:
        return torch.bincount(bl[mask], minlength=B * L).reshape(B, L).cpu().numpy()

    lp, li, lh, le = per_level(positive), per_level(ignored), per_level(hard), per_level(easy)
    res["level_pos"][batch], res["level_ign"][batch] = lp, li
    res["level_hard"][batch], res["level_easy"][batch] = lh, le
    res["positives"][batch], res["ignored"][batch] = lp.sum(1), li.sum(1)
    res["hard"][batch], res["easy"][batch] = lh.sum(1), le.sum(1)
    bk = torch.arange(B, device=dev)[:, None] * kmax + argmax  # (B, N)
    npos = torch.bincount(bk[positive], minlength=B * kmax).reshape(B, kmax)
    regular = torch.bincount(bk[positive & (matched_vals >= pos_t)], minlength=B * kmax).reshape(B, kmax)
    sel = idx >= 0
    box_pos[idx[sel]] = npos.cpu().numpy()[sel]
    box_best[idx[sel]] = gt_best.cpu().numpy()[sel]
    box_lq[idx[sel]] = ((npos > 0) & (regular == 0)).cpu().numpy()[sel]
