"""The scan's fast exact path (numpy): candidate anchors and their exact float32 IoUs, then the labels.

:func:`scan_chunk` labels a chunk of images at once, with no per-image Python and no dense IoU matrix (see
:mod:`explorer.dataset.scan` for the method): a lower bound of each box's best IoU (:func:`_lower_best_iou`), the
candidate anchors that can reach it and their exact IoUs (:func:`_candidate_pairs`), the matcher's labels from
those pairs (:func:`_label_pairs`), and the anchors overlapping no box from the union of rectangles
(:mod:`explorer.dataset.scan_union`). The geometry is in :mod:`explorer.dataset.scan_geometry`. Everything here is
internal to :func:`explorer.dataset.scan.scan_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explorer.boxes import iou_coords, iou_from_areas, ragged_arange
from explorer.dataset.scan_geometry import Geometry, anchor_coords, coord
from explorer.dataset.scan_union import union_counts

if TYPE_CHECKING:
    from explorer.dataset.scan_config import ScanConfig

#: Box width or height (input pixels) below which an image goes through the reference path.
TINY = 1e-3

#: Per-image totals and their (n, L) per-level splits, as every path of the scan fills them.
TOTALS: tuple[str, ...] = ("positives", "ignored", "hard", "easy")
PER_LEVEL: tuple[str, ...] = ("level_pos", "level_ign", "level_hard", "level_easy")


@dataclass
class ChunkOut:
    positives: np.ndarray  # (n,)
    ignored: np.ndarray
    hard: np.ndarray
    easy: np.ndarray
    level_pos: np.ndarray  # (n, L)
    level_ign: np.ndarray
    level_hard: np.ndarray
    level_easy: np.ndarray
    box_pos: np.ndarray  # (G,)
    box_best: np.ndarray
    box_lq_only: np.ndarray
    fallback: np.ndarray  # (n,) bool images to redo with the reference path


@dataclass
class _ChunkBoxes:
    """The G boxes of a chunk with what every step needs of them.

    Attributes:
        boxes: (G, 4) float32 xyxy input scale; b_img: (G,) image within the chunk; K: (n,) boxes per image.
        bw32, bh32: (G,) float32 width and height; bcx, bcy, bw, bh, barea: (G,) float64 centre, size, area.
        gh, gw, sh, sw: (G, L) int64 grid size and stride of the box's image per level; oy, ox: (G, L) float64
            centre offsets.
    """

    boxes: np.ndarray
    b_img: np.ndarray
    K: np.ndarray
    bw32: np.ndarray
    bh32: np.ndarray
    bcx: np.ndarray
    bcy: np.ndarray
    bw: np.ndarray
    bh: np.ndarray
    barea: np.ndarray
    gh: np.ndarray
    gw: np.ndarray
    sh: np.ndarray
    sw: np.ndarray
    oy: np.ndarray
    ox: np.ndarray

    @classmethod
    def of(cls, boxes: np.ndarray, b_img: np.ndarray, K: np.ndarray, geo: Geometry, sel: np.ndarray) -> _ChunkBoxes:
        b64 = boxes.astype(np.float64)
        bw, bh = b64[:, 2] - b64[:, 0], b64[:, 3] - b64[:, 1]
        rows = sel[b_img]
        return cls(
            boxes=boxes, b_img=b_img, K=K, bw32=boxes[:, 2] - boxes[:, 0], bh32=boxes[:, 3] - boxes[:, 1],
            bcx=(b64[:, 0] + b64[:, 2]) / 2, bcy=(b64[:, 1] + b64[:, 3]) / 2, bw=bw, bh=bh, barea=bw * bh,
            gh=geo.gh[rows], gw=geo.gw[rows], sh=geo.sh[rows], sw=geo.sw[rows], oy=geo.oy[rows], ox=geo.ox[rows],
        )  # fmt: skip


@dataclass
class _Pairs:
    """(box, anchor) pairs: global box index ``g`` (int64), flat anchor index within its image ``anchor`` (int64),
    float32 ``iou``, pyramid level ``level`` (int8)."""

    g: np.ndarray
    anchor: np.ndarray
    iou: np.ndarray
    level: np.ndarray


def scan_chunk(
    boxes: np.ndarray, b_img: np.ndarray, n_img: int, geo: Geometry, sel: np.ndarray, cfg: ScanConfig,
) -> ChunkOut:  # fmt: skip
    """Exact counts for n_img images (geometry rows ``sel``) with G non-crowd input-scale boxes.

    boxes: (G, 4) float32 grouped by image (b_img non-decreasing), in file order within an image.
    """
    num_levels = geo.num_levels
    neg_t = np.float32(cfg.neg_thresh)
    G = len(boxes)
    K = np.bincount(b_img, minlength=n_img)
    lstart = geo.level_start[sel]
    total = lstart[:, -1]
    out = ChunkOut(
        positives=np.zeros(n_img, np.int64), ignored=np.zeros(n_img, np.int64), hard=np.zeros(n_img, np.int64),
        easy=total.copy(), level_pos=np.zeros((n_img, num_levels), np.int64),
        level_ign=np.zeros((n_img, num_levels), np.int64), level_hard=np.zeros((n_img, num_levels), np.int64),
        level_easy=np.diff(lstart, axis=1), box_pos=np.zeros(G, np.int64), box_best=np.zeros(G, np.float32),
        box_lq_only=np.zeros(G, bool), fallback=np.zeros(n_img, bool),
    )  # fmt: skip
    if G == 0:
        return out
    cb = _ChunkBoxes.of(boxes, b_img, K, geo, sel)
    tiny = (cb.bw32 < TINY) | (cb.bh32 < TINY) | ~np.isfinite(boxes).all(axis=1)
    out.fallback[b_img[tiny]] = True

    # 1. Lower bound of each GT's best IoU: IoU with the anchors centred nearest to its centre.
    lower = _lower_best_iou(cb, geo)
    out.fallback[b_img[lower <= 0]] = True
    t = np.minimum(lower.astype(np.float64), float(neg_t)) if cfg.low_quality else np.full(G, float(neg_t))
    t = t * (1 - 1e-4)  # slack for float32 rounding: candidates are a superset

    # 2. Candidate anchors with IoU >= t for each GT, and their exact float32 IoU.
    pairs = _candidate_pairs(cb, geo, t, lstart)
    best = np.zeros(G, np.float32)
    np.maximum.at(best, pairs.g, pairs.iou)
    out.box_best = best
    if (best < lower).any():  # pragma: no cover - the candidate bound missed an anchor: a bug; stay exact anyway
        out.fallback[b_img[best < lower]] = True

    # 3. Per anchor: max IoU over GTs and its argmax (first GT in file order), low-quality promotion.
    level_non_hard = _label_pairs(pairs, best, cb, total, geo, sel, cfg, out)

    # 4. Anchors with IoU > 0 with some GT: union of the boxes' overlap rectangles, per (level, cell shape).
    union = union_counts(boxes, b_img, K, n_img, geo, sel)
    out.level_easy = np.diff(lstart, axis=1) - union
    out.level_hard = union - level_non_hard
    out.positives = out.level_pos.sum(axis=1)
    out.ignored = out.level_ign.sum(axis=1)
    out.hard = out.level_hard.sum(axis=1)
    out.easy = out.level_easy.sum(axis=1)
    return out


def _lower_best_iou(cb: _ChunkBoxes, geo: Geometry) -> np.ndarray:
    """(G,) float32 a lower bound of each box's best IoU: its IoU with the anchors centred nearest to its centre
    (0 when that IoU is NaN)."""
    boxes, bcx, bcy, integral = cb.boxes, cb.bcx, cb.bcy, geo.integral
    lower = np.zeros(len(boxes), np.float32)
    for lv in range(geo.num_levels):
        cells = geo.cells[lv]
        c0x = (cells[:, 0].astype(np.float64) + cells[:, 2]) / 2
        c0y = (cells[:, 1].astype(np.float64) + cells[:, 3]) / 2
        s_w, s_h = cb.sw[:, lv, None], cb.sh[:, lv, None]
        o_x, o_y = cb.ox[:, lv, None], cb.oy[:, lv, None]
        j0 = np.clip(np.rint((bcx[:, None] - o_x - c0x) / s_w), 0, cb.gw[:, lv, None] - 1).astype(np.int64)
        i0 = np.clip(np.rint((bcy[:, None] - o_y - c0y) / s_h), 0, cb.gh[:, lv, None] - 1).astype(np.int64)
        b = boxes[:, None, :]
        iou = iou_coords(
            b[..., 0], b[..., 1], b[..., 2], b[..., 3],
            coord(j0, s_w, o_x, cells[:, 0], integral),
            coord(i0, s_h, o_y, cells[:, 1], integral),
            coord(j0, s_w, o_x, cells[:, 2], integral),
            coord(i0, s_h, o_y, cells[:, 3], integral),
        )  # fmt: skip
        np.maximum(lower, np.nan_to_num(iou.max(axis=1), nan=0.0), out=lower)
    return lower


def _candidate_pairs(cb: _ChunkBoxes, geo: Geometry, t: np.ndarray, lstart: np.ndarray) -> _Pairs:
    """The (box, anchor) pairs with IoU >= ``t`` (G,) float64 of the box, over all levels, with their exact
    float32 IoU (separable: column overlap times row overlap)."""
    t32 = t.astype(np.float32)
    area_b32 = cb.bw32 * cb.bh32
    pair_g, pair_a, pair_iou, pair_lv = [], [], [], []
    for lv in range(geo.num_levels):
        found = _level_candidates(cb, geo, lv, t, t32, area_b32, lstart)
        if found is None:
            continue
        g, anchor, iou = found
        pair_g.append(g)
        pair_a.append(anchor)
        pair_iou.append(iou)
        pair_lv.append(np.full(len(g), lv, np.int8))
    return _Pairs(
        g=np.concatenate(pair_g) if pair_g else np.zeros(0, np.int64),
        anchor=np.concatenate(pair_a) if pair_a else np.zeros(0, np.int64),
        iou=np.concatenate(pair_iou) if pair_iou else np.zeros(0, np.float32),
        level=np.concatenate(pair_lv) if pair_lv else np.zeros(0, np.int8),
    )


def _level_candidates(
    cb: _ChunkBoxes, geo: Geometry, lv: int, t: np.ndarray, t32: np.ndarray, area_b32: np.ndarray,
    lstart: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """Level ``lv``'s pairs with IoU >= t: box, flat anchor index, float32 IoU (None when there are none)."""
    boxes, bw, bh, barea, integral = cb.boxes, cb.bw, cb.bh, cb.barea, geo.integral
    cells = geo.cells[lv]
    A = len(cells)
    cw = (cells[:, 2].astype(np.float64) - cells[:, 0])[None, :]
    ch = (cells[:, 3].astype(np.float64) - cells[:, 1])[None, :]
    c0x = ((cells[:, 0].astype(np.float64) + cells[:, 2]) / 2)[None, :]
    c0y = ((cells[:, 1].astype(np.float64) + cells[:, 3]) / 2)[None, :]
    # IoU >= t  <=>  inter >= t (area_a + area_b) / (1 + t), and inter <= x-overlap * min(heights).
    need = t[:, None] * (cw * ch + barea[:, None]) / (1 + t[:, None])
    ox_min = need / np.minimum(ch, bh[:, None])
    oy_min = need / np.minimum(cw, bw[:, None])
    feasible = (ox_min <= np.minimum(cw, bw[:, None]) + 1e-3) & (oy_min <= np.minimum(ch, bh[:, None]) + 1e-3)
    dx = (cw + bw[:, None]) / 2 - ox_min + 1e-3
    dy = (ch + bh[:, None]) / 2 - oy_min + 1e-3
    s_w, s_h = cb.sw[:, lv, None].astype(np.float64), cb.sh[:, lv, None].astype(np.float64)
    j_lo = np.maximum(np.ceil((cb.bcx[:, None] - dx - cb.ox[:, lv, None] - c0x) / s_w), 0)
    j_hi = np.minimum(np.floor((cb.bcx[:, None] + dx - cb.ox[:, lv, None] - c0x) / s_w), cb.gw[:, lv, None] - 1)
    i_lo = np.maximum(np.ceil((cb.bcy[:, None] - dy - cb.oy[:, lv, None] - c0y) / s_h), 0)
    i_hi = np.minimum(np.floor((cb.bcy[:, None] + dy - cb.oy[:, lv, None] - c0y) / s_h), cb.gh[:, lv, None] - 1)
    ok = feasible & (j_hi >= j_lo) & (i_hi >= i_lo)
    r = np.flatnonzero(ok.ravel())
    if len(r) == 0:
        return None
    g, a = np.divmod(r, A)
    jl = j_lo.ravel()[r].astype(np.int64)
    il = i_lo.ravel()[r].astype(np.int64)
    nj = j_hi.ravel()[r].astype(np.int64) - jl + 1
    ni = i_hi.ravel()[r].astype(np.int64) - il + 1
    # columns: x overlap and anchor width; rows: y overlap and anchor height
    _, _, _, jv, iw, aw = _axis_overlaps(g, a, jl, nj, cb.sw[:, lv], cb.ox[:, lv], cells, boxes, 0, integral)
    owner, gr, ar, iv, ih, ah = _axis_overlaps(g, a, il, ni, cb.sh[:, lv], cb.oy[:, lv], cells, boxes, 1, integral)
    # pairs: every row runs over its (box, shape)'s columns
    run = nj[owner]
    col_start = np.cumsum(nj) - nj
    cs = ragged_arange(col_start[owner], run)
    inter = iw[cs] * np.repeat(ih, run)
    area_a = aw[cs] * np.repeat(ah, run)
    iou = iou_from_areas(inter, np.repeat(area_b32[gr], run), area_a)
    keep = iou >= np.repeat(t32[gr], run)
    row_base = lstart[cb.b_img[gr], lv] + iv * cb.gw[gr, lv] * A + ar
    anchor = np.repeat(row_base, run) + jv[cs] * A
    return np.repeat(gr, run)[keep], anchor[keep], iou[keep]


def _label_pairs(
    pairs: _Pairs, best: np.ndarray, cb: _ChunkBoxes, total: np.ndarray, geo: Geometry, sel: np.ndarray,
    cfg: ScanConfig, out: ChunkOut,
) -> np.ndarray:  # fmt: skip
    """Torchvision's Matcher on the candidate pairs: per anchor its max IoU and first argmax GT, low-quality
    promotion. Fills ``out.level_pos``, ``level_ign``, ``box_pos``, ``box_lq_only``; returns (n, L) the anchors
    that are not hard negatives among those overlapping a box (the positive and the ignored ones).

    A pair below ``neg`` that is not its box's best changes no label (it can only be the max of an anchor whose
    label is then "hard negative", or lose to a tied pair whose argmax is recomputed over all GTs), so all pairs go
    in without a filtering copy."""
    pos_t, neg_t = np.float32(cfg.pos_thresh), np.float32(cfg.neg_thresh)
    b_img, G = cb.b_img, len(cb.boxes)
    n_img, L = len(cb.K), geo.num_levels
    n_anchor_max = int(total.max()) + 1
    # Group the pairs by (image, anchor). The sort is stable and the pairs come in box order within a level (an
    # anchor belongs to one level), so within an anchor its pairs stay in file order: the first at the max is
    # torchvision's argmax. Sorted runs make the stable sort (timsort) about 2.7x faster than a quicksort here.
    key = b_img[pairs.g] * n_anchor_max + pairs.anchor
    order = np.argsort(key, kind="stable")
    key = key[order]
    pg, piou = pairs.g[order], pairs.iou[order]
    n_pairs = len(pg)
    new = np.ones(n_pairs, bool)
    np.not_equal(key[1:], key[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    if n_pairs:
        smax = np.maximum.reduceat(piou, starts)
        at_max = piou == smax[np.cumsum(new) - 1]
        arg_g = pg[np.minimum.reduceat(np.where(at_max, np.arange(n_pairs), n_pairs), starts)]
    else:
        smax, arg_g = np.zeros(0, np.float32), np.zeros(0, np.int64)
    s_img = key[starts] // n_anchor_max
    s_lv = pairs.level[order[starts]].astype(np.int64)
    positive = smax >= pos_t
    if cfg.low_quality and n_pairs:
        tied = (piou == best[pg]).view(np.int8)
        promoted = np.maximum.reduceat(tied, starts).view(bool)
        # Promoted anchors whose IoU is below neg: their own argmax GT may be one not listed; check all GTs.
        low = np.flatnonzero(promoted & (smax < neg_t))
        if len(low):
            anchor = pairs.anchor[order[starts[low]]]
            arg_g[low] = _full_argmax(cb, anchor, s_img[low], smax[low], geo, sel, s_lv[low])
        positive |= promoted
    ignored = ~positive & (smax >= neg_t)
    # One count per (image, level, label): 0 hard, 1 positive, 2 ignored; per box: its positives, regular or not.
    label = positive.view(np.int8) + 2 * ignored.view(np.int8)
    per_level = np.bincount((s_img * L + s_lv) * 3 + label, minlength=n_img * L * 3).reshape(n_img, L, 3)
    out.level_pos, out.level_ign = per_level[..., 1], per_level[..., 2]
    per_box = np.bincount(arg_g[positive] * 2 + (smax[positive] >= pos_t), minlength=2 * G).reshape(G, 2)
    out.box_pos = per_box.sum(axis=1)
    out.box_lq_only = (out.box_pos > 0) & (per_box[:, 1] == 0)
    return out.level_pos + out.level_ign


def _axis_overlaps(
    g: np.ndarray, a: np.ndarray, start: np.ndarray, count: np.ndarray, stride: np.ndarray, offset: np.ndarray,
    cells: np.ndarray, boxes: np.ndarray, axis: int, integral: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One axis (0: x columns, 1: y rows) of the candidates (box ``g``, cell shape ``a``) with grid indices
    ``start .. start + count - 1``: one entry per (candidate, index) with its candidate ``owner``, box, cell shape,
    grid index, float32 overlap with the box and float32 anchor extent. ``stride``, ``offset``: (G,) per box."""
    owner = np.repeat(np.arange(len(start)), count)
    go, ao = g[owner], a[owner]
    idx = ragged_arange(start, count)
    st, of = stride[go], offset[go]
    lo = coord(idx, st, of, cells[ao, axis], integral)
    hi = coord(idx, st, of, cells[ao, axis + 2], integral)
    overlap = np.maximum(np.minimum(hi, boxes[go, axis + 2]) - np.maximum(lo, boxes[go, axis]), np.float32(0))
    return owner, go, ao, idx, overlap, hi - lo


def _full_argmax(
    cb: _ChunkBoxes, anchor: np.ndarray, a_img: np.ndarray, smax: np.ndarray, geo: Geometry, sel: np.ndarray,
    a_lv: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """argmax GT (chunk box index, first in file order) of the given anchors over all GTs of their image, whose
    best IoU is ``smax`` (> 0, reached by one of them).

    Only GTs that can reach ``smax`` are compared: IoU <= min(areas) / max(areas), so a GT's area must lie in
    [smax * area_a, area_a / smax] (widened for float32 rounding). The GTs of each image are sorted by area and
    each anchor takes the range of its image's that passes."""
    boxes, b_img = cb.boxes, cb.b_img
    coords = anchor_coords(anchor, a_img, a_lv, geo, sel)
    area_a = (coords[2] - coords[0]).astype(np.float64) * (coords[3] - coords[1])
    area_b = cb.bw * cb.bh
    # Sort key: image, then area scaled into [0, 0.5]; ranges are widened so the float64 rounding of the key (about
    # 1e-12 at 2,048 images) cannot drop a GT.
    scale = 0.5 / max(float(area_b.max(initial=0.0)), float(area_a.max(initial=0.0)), 1e-30)
    by_area = np.lexsort((area_b, b_img))
    key = b_img[by_area] + area_b[by_area] * scale
    slack = 1e-4
    with np.errstate(divide="ignore", invalid="ignore"):  # smax 0 or NaN only in images redone by the reference
        lo = np.searchsorted(key, a_img + smax * (1 - slack) * area_a * scale - 1e-9, side="left")
        upper = np.minimum(area_a / (smax * (1 - slack)) * scale + 1e-9, 0.75)
    hi = np.searchsorted(key, a_img + upper, side="right")
    first_box = np.concatenate([[0], np.cumsum(cb.K)])
    bad = hi <= lo  # not expected (the anchor's own GT passes); compare all GTs of the image then
    lo = np.where(bad, first_box[a_img], lo)
    hi = np.where(bad, first_box[a_img + 1], hi)
    reps = hi - lo
    owner = np.repeat(np.arange(len(anchor)), reps)
    gidx = by_area[ragged_arange(lo, reps)]
    b = boxes[gidx]
    iou = iou_coords(b[:, 0], b[:, 1], b[:, 2], b[:, 3], *(c[owner] for c in coords))
    seg_start = np.cumsum(reps) - reps
    mx = np.maximum.reduceat(iou, seg_start)
    first = np.where(iou == mx[owner], gidx, len(boxes))
    return np.minimum.reduceat(first, seg_start)
