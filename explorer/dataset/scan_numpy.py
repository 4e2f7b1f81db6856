"""The scan's fast exact path (numpy): candidate anchors, exact float32 IoUs and union-of-rectangles counts.

:func:`scan_chunk` labels a chunk of images at once, with no per-image Python and no dense IoU matrix (see
:mod:`explorer.dataset.scan` for the method). Everything here is internal to
:func:`explorer.dataset.scan.scan_dataset`, except
:func:`union_cells`, a small general tool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explorer.anchors.grid import AnchorConfig, level_grids, resized_size

if TYPE_CHECKING:
    from explorer.dataset.scan_config import ScanConfig

#: Box width or height (input pixels) below which an image goes through the reference path.
TINY = 1e-3


# ----------------------------------------------------------------------------------------------------------------
# Geometry shared by all images of one input size
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Geometry:
    """Per image (I,) input size, box ratios and per level (I, L) grids; cell anchors per level."""

    input_h: np.ndarray
    input_w: np.ndarray
    ratio_h: np.ndarray  # float32
    ratio_w: np.ndarray  # float32
    gh: np.ndarray
    gw: np.ndarray
    sh: np.ndarray
    sw: np.ndarray
    oy: np.ndarray  # float64 centre offsets
    ox: np.ndarray
    level_start: np.ndarray  # (I, L + 1) first anchor index of each level, then the total
    level_numbers: tuple[int, ...]
    cells: list[np.ndarray]  # per level (A, 4) float32 cell anchors
    integral: bool = False  # integer cell anchors, zero offsets, coordinates < 2**24 (torchvision)

    @property
    def num_levels(self) -> int:
        return len(self.cells)


class ElongatedImageError(ValueError):
    """An image so elongated that the resize to the network input makes one side 0 px (torchvision fails too).

    ``index`` is the image's position in the dataset, so the caller can name it.
    """

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(f"{message}; fix its width/height or drop it")


def size_groups(heights: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (height, width) pairs, exactly, and the group of each image.

    Returns:
        (U, 2) int64 sorted distinct ``(height, width)`` rows, and (I,) int64 the row of each image.

    Example:
        >>> uniq, inv = size_groups(np.array([480, 480, 2**32]), np.array([640, 640, 1]))
        >>> uniq.tolist(), inv.tolist()
        ([[480, 640], [4294967296, 1]], [0, 0, 1])
    """
    hw = np.stack([np.asarray(heights, np.int64), np.asarray(widths, np.int64)], axis=1).reshape(-1, 2)
    uniq, inv = np.unique(hw, axis=0, return_inverse=True)
    return uniq, inv.reshape(-1)


def geometry(heights: np.ndarray, widths: np.ndarray, config: AnchorConfig) -> Geometry:
    n = len(heights)
    num_levels = config.num_levels
    uniq, inv = size_groups(heights, widths)
    sizes = np.zeros((len(uniq), 2), np.int64)
    grid_rows = np.zeros((len(uniq), 6, num_levels), np.float64)
    counts = np.zeros((len(uniq), num_levels), np.int64)
    cells: list[np.ndarray] | None = None
    cache: dict[tuple[int, int], tuple] = {}
    for u, (h, w) in enumerate(uniq.tolist()):
        try:
            rh, rw = resized_size(h, w, config)
        except ValueError as err:  # resizes to 0 px on one side
            raise ElongatedImageError(int(np.flatnonzero(inv == u)[0]), str(err)) from None
        sizes[u] = (rh, rw)
        if (rh, rw) not in cache:
            grids = level_grids(rh, rw, config)
            cache[(rh, rw)] = (
                np.array(
                    [
                        [g.grid_hw[0] for g in grids],
                        [g.grid_hw[1] for g in grids],
                        [g.stride_hw[0] for g in grids],
                        [g.stride_hw[1] for g in grids],
                        [g.offset_hw[0] for g in grids],
                        [g.offset_hw[1] for g in grids],
                    ],
                    np.float64,
                ),
                np.array([g.num_anchors for g in grids], np.int64),
            )
            if cells is None:
                cells = [g.cell_anchors.astype(np.float32) for g in grids]
        grid_rows[u], counts[u] = cache[(rh, rw)]
    if cells is None:
        grids = level_grids(config.min_size or 32, config.max_size or 32, config)
        cells = [g.cell_anchors.astype(np.float32) for g in grids]
    input_h = sizes[inv, 0] if n else np.zeros(0, np.int64)
    input_w = sizes[inv, 1] if n else np.zeros(0, np.int64)
    g = grid_rows[inv] if n else np.zeros((0, 6, num_levels))
    level_start = np.zeros((n, num_levels + 1), np.int64)
    if n:
        np.cumsum(counts[inv], axis=1, out=level_start[:, 1:])
    # torchvision's resize_boxes: ratio = float32(new) / float32(original), per axis.
    ratio_h = input_h.astype(np.float32) / heights.astype(np.float32)
    ratio_w = input_w.astype(np.float32) / widths.astype(np.float32)
    integral = (
        all(bool(np.all(c == np.round(c))) for c in cells)
        and not np.any(g[:, 4:6])
        and max(int(input_h.max(initial=0)), int(input_w.max(initial=0))) + 4096 < 2**24
        and all(float(np.abs(c).max(initial=0)) < 2**20 for c in cells)
    )
    return Geometry(
        integral=integral,
        input_h=input_h,
        input_w=input_w,
        ratio_h=ratio_h,
        ratio_w=ratio_w,
        gh=g[:, 0].astype(np.int64),
        gw=g[:, 1].astype(np.int64),
        sh=g[:, 2].astype(np.int64),
        sw=g[:, 3].astype(np.int64),
        oy=g[:, 4],
        ox=g[:, 5],
        level_start=level_start,
        level_numbers=config.levels,
        cells=cells,
    )


def _coord(
    idx: np.ndarray, stride: np.ndarray, offset: np.ndarray, cell: np.ndarray | np.float32, integral: bool
) -> np.ndarray:
    """float32 anchor coordinate of grid index ``idx``, as the generator computes it: float32(idx * stride +
    offset) + cell, a float32 add. On an integral grid (integer cells, zero offsets, coordinates < 2**24, as
    torchvision's) this is the exact integer ``idx * stride + cell``, computed directly."""
    if integral:
        return (idx * stride + cell).astype(np.float32)
    shift = (idx * stride + offset).astype(np.float32)
    return shift + np.asarray(cell, dtype=np.float32)


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[r], starts[r] + lengths[r])`` over r (lengths >= 0), int64."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    keep = lengths > 0
    starts, lengths = starts[keep].astype(np.int64), lengths[keep].astype(np.int64)
    out = np.ones(total, np.int64)
    first = np.cumsum(lengths) - lengths
    out[0] = starts[0]
    out[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(out, out=out)


def _first_true(pred: Callable[[np.ndarray], np.ndarray], est: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Smallest j in [0, n] with pred(j) true, for a predicate monotone in j, starting from an estimate that is
    off by a few steps at most (floating-point division)."""
    j = np.clip(est, 0, n)
    for _ in range(64):
        down = (j > 0) & pred(np.maximum(j - 1, 0))
        up = (j < n) & ~pred(np.minimum(j, np.maximum(n - 1, 0)))
        if not (down.any() or up.any()):
            return j
        j = j - down + up
    raise RuntimeError("grid index search did not converge")  # pragma: no cover - a bug, not bad input


def _overlap_range(
    lo: np.ndarray, hi: np.ndarray, stride: np.ndarray, offset: np.ndarray, cell_lo: np.float32, cell_hi: np.float32,
    n: np.ndarray, integral: bool,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Grid indices [first, end) whose anchor extent [c(j) + cell_lo, c(j) + cell_hi] overlaps (lo, hi) with a
    positive length, exactly as float32 compares: anchor_hi > lo and anchor_lo < hi."""
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    st = stride.astype(np.float64)
    est_first = np.floor((lo64 - offset - float(cell_hi)) / st).astype(np.int64) + 1
    est_end = np.ceil((hi64 - offset - float(cell_lo)) / st).astype(np.int64)
    if integral:  # exact integer coordinates: compare in float64 (the float32 values are the same numbers)
        c_hi, c_lo = float(cell_hi), float(cell_lo)
        first = _first_true(lambda j: j * st + c_hi > lo64, est_first, n)
        end = _first_true(lambda j: j * st + c_lo >= hi64, est_end, n)
    else:
        first = _first_true(lambda j: _coord(j, stride, offset, cell_hi, False) > lo, est_first, n)
        end = _first_true(lambda j: _coord(j, stride, offset, cell_lo, False) >= hi, est_end, n)
    return first, np.maximum(end, first)


def _iou_f32(b: np.ndarray, ax1: np.ndarray, ay1: np.ndarray, ax2: np.ndarray, ay2: np.ndarray) -> np.ndarray:
    """IoU of boxes ``b`` (..., 4) float32 with anchors given by their float32 coordinates, torchvision's order:
    inter / ((area_gt + area_anchor) - inter)."""
    w = np.minimum(b[..., 2], ax2) - np.maximum(b[..., 0], ax1)
    h = np.minimum(b[..., 3], ay2) - np.maximum(b[..., 1], ay1)
    inter = np.maximum(w, np.float32(0)) * np.maximum(h, np.float32(0))
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_a = (ax2 - ax1) * (ay2 - ay1)
    return inter / (area_b + area_a - inter)


# ----------------------------------------------------------------------------------------------------------------
# Union of rectangles on a grid
# ----------------------------------------------------------------------------------------------------------------


def union_cells(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Number of grid cells covered by the union of K rectangles [x0, x1) x [y0, y1), for many problems at once.

    Sweep over horizontal slabs (between consecutive y edges, or single rows when ``rows`` is smaller); in each
    slab the covered length of the x intervals is the classic running-maximum merge, which needs the intervals in
    order of x0: the rectangles must be sorted by x0 along the last axis.

    Args:
        x0, x1, y0, y1: (..., K) integer arrays; empty rectangles (x1 <= x0 or y1 <= y0) are allowed.
        rows: if given and < 2K - 1, sweep rows 0..rows-1 instead of slabs (all y must lie in [0, rows]).

    Returns:
        (...,) int64 covered cells.

    Example:
        >>> union_cells(np.array([0, 2]), np.array([3, 5]), np.array([0, 1]), np.array([2, 3])).item()
        11
    """
    k = x0.shape[-1]
    if k == 0:
        return np.zeros(x0.shape[:-1], np.int64)
    if k == 1:
        return (np.maximum(x1 - x0, 0).astype(np.int64) * np.maximum(y1 - y0, 0))[..., 0]
    empty = (x1 <= x0) | (y1 <= y0)
    y0 = np.where(empty, 0, y0)
    y1 = np.where(empty, 0, y1)
    if rows is not None and rows < 2 * k - 1:
        lo = np.arange(rows, dtype=y0.dtype)
        hi = lo + 1
        lo = np.broadcast_to(lo, (*y0.shape[:-1], rows))
        hi = np.broadcast_to(hi, (*y0.shape[:-1], rows))
    else:
        edges = np.sort(np.concatenate([y0, y1], axis=-1), axis=-1)
        lo, hi = edges[..., :-1], edges[..., 1:]
    height = (hi - lo).astype(np.int64)
    cover = (y0[..., None, :] <= lo[..., :, None]) & (y1[..., None, :] >= hi[..., :, None])
    end = np.where(cover, x1[..., None, :], 0)
    run = np.maximum.accumulate(end, axis=-1)
    start = np.broadcast_to(x0[..., None, :], end.shape).copy()
    np.maximum(start[..., 1:], run[..., :-1], out=start[..., 1:])
    length = np.maximum(end - start, 0).sum(axis=-1, dtype=np.int64)
    return (length * height).sum(axis=-1)


# ----------------------------------------------------------------------------------------------------------------
# The fast exact path (numpy)
# ----------------------------------------------------------------------------------------------------------------


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


def scan_chunk(
    boxes: np.ndarray, b_img: np.ndarray, b_k: np.ndarray, n_img: int, geo: Geometry, sel: np.ndarray,
    cfg: ScanConfig,
) -> ChunkOut:  # fmt: skip
    """Exact counts for n_img images (geometry rows ``sel``) with G non-crowd input-scale boxes.

    boxes: (G, 4) float32 grouped by image (b_img non-decreasing), b_k the box's index within its image.
    """
    num_levels = geo.num_levels
    pos_t, neg_t = np.float32(cfg.pos_thresh), np.float32(cfg.neg_thresh)
    G = len(boxes)
    K = np.bincount(b_img, minlength=n_img)
    gh, gw, sh, sw = geo.gh[sel], geo.gw[sel], geo.sh[sel], geo.sw[sel]
    oy, ox = geo.oy[sel], geo.ox[sel]
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
    bw32 = boxes[:, 2] - boxes[:, 0]
    bh32 = boxes[:, 3] - boxes[:, 1]
    tiny = (bw32 < TINY) | (bh32 < TINY) | ~np.isfinite(boxes).all(axis=1)
    out.fallback[b_img[tiny]] = True
    b64 = boxes.astype(np.float64)
    bcx, bcy = (b64[:, 0] + b64[:, 2]) / 2, (b64[:, 1] + b64[:, 3]) / 2
    bw, bh = b64[:, 2] - b64[:, 0], b64[:, 3] - b64[:, 1]
    barea = bw * bh
    # Per-box grid parameters per level: (G, L).
    G_gh, G_gw, G_sh, G_sw = gh[b_img], gw[b_img], sh[b_img], sw[b_img]
    G_oy, G_ox = oy[b_img], ox[b_img]

    integral = geo.integral
    # 1. Lower bound of each GT's best IoU: IoU with the anchors centred nearest to its centre.
    lower = np.zeros(G, np.float32)
    for lv in range(num_levels):
        cells = geo.cells[lv]
        c0x = (cells[:, 0].astype(np.float64) + cells[:, 2]) / 2
        c0y = (cells[:, 1].astype(np.float64) + cells[:, 3]) / 2
        s_w, s_h = G_sw[:, lv, None], G_sh[:, lv, None]
        o_x, o_y = G_ox[:, lv, None], G_oy[:, lv, None]
        j0 = np.clip(np.rint((bcx[:, None] - o_x - c0x) / s_w), 0, G_gw[:, lv, None] - 1).astype(np.int64)
        i0 = np.clip(np.rint((bcy[:, None] - o_y - c0y) / s_h), 0, G_gh[:, lv, None] - 1).astype(np.int64)
        iou = _iou_f32(
            boxes[:, None, :],
            _coord(j0, s_w, o_x, cells[:, 0], integral),
            _coord(i0, s_h, o_y, cells[:, 1], integral),
            _coord(j0, s_w, o_x, cells[:, 2], integral),
            _coord(i0, s_h, o_y, cells[:, 3], integral),
        )
        np.maximum(lower, np.nan_to_num(iou.max(axis=1), nan=0.0), out=lower)
    out.fallback[b_img[lower <= 0]] = True
    t = np.minimum(lower.astype(np.float64), float(neg_t)) if cfg.low_quality else np.full(G, float(neg_t))
    t = t * (1 - 1e-4)  # slack for float32 rounding: candidates are a superset
    t32 = t.astype(np.float32)
    area_b32 = bw32 * bh32

    # 2. Candidate anchors with IoU >= t for each GT, and their exact float32 IoU (separable: column overlap
    #    times row overlap), kept when IoU >= t.
    pair_g, pair_a, pair_iou, pair_lv = [], [], [], []
    for lv in range(num_levels):
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
        s_w, s_h = G_sw[:, lv, None].astype(np.float64), G_sh[:, lv, None].astype(np.float64)
        j_lo = np.maximum(np.ceil((bcx[:, None] - dx - G_ox[:, lv, None] - c0x) / s_w), 0)
        j_hi = np.minimum(np.floor((bcx[:, None] + dx - G_ox[:, lv, None] - c0x) / s_w), G_gw[:, lv, None] - 1)
        i_lo = np.maximum(np.ceil((bcy[:, None] - dy - G_oy[:, lv, None] - c0y) / s_h), 0)
        i_hi = np.minimum(np.floor((bcy[:, None] + dy - G_oy[:, lv, None] - c0y) / s_h), G_gh[:, lv, None] - 1)
        ok = feasible & (j_hi >= j_lo) & (i_hi >= i_lo)
        r = np.flatnonzero(ok.ravel())
        if len(r) == 0:
            continue
        g, a = np.divmod(r, A)
        jl = j_lo.ravel()[r].astype(np.int64)
        il = i_lo.ravel()[r].astype(np.int64)
        nj = j_hi.ravel()[r].astype(np.int64) - jl + 1
        ni = i_hi.ravel()[r].astype(np.int64) - il + 1
        # columns: x overlap and anchor width; rows: y overlap and anchor height
        _, _, _, jv, iw, aw = _axis_overlaps(g, a, jl, nj, G_sw[:, lv], G_ox[:, lv], cells, boxes, 0, integral)
        owner, gr, ar, iv, ih, ah = _axis_overlaps(g, a, il, ni, G_sh[:, lv], G_oy[:, lv], cells, boxes, 1, integral)
        # pairs: every row runs over its (box, shape)'s columns
        run = nj[owner]
        col_start = np.cumsum(nj) - nj
        cs = _ragged(col_start[owner], run)
        inter = iw[cs] * np.repeat(ih, run)
        area_a = aw[cs] * np.repeat(ah, run)
        union = (np.repeat(area_b32[gr], run) + area_a) - inter
        iou = inter / union
        keep = iou >= np.repeat(t32[gr], run)
        row_base = lstart[b_img[gr], lv] + iv * G_gw[gr, lv] * A + ar
        anchor = np.repeat(row_base, run) + jv[cs] * A
        pair_g.append(np.repeat(gr, run)[keep])
        pair_a.append(anchor[keep])
        pair_iou.append(iou[keep])
        pair_lv.append(np.full(int(keep.sum()), lv, np.int8))
    pg = np.concatenate(pair_g) if pair_g else np.zeros(0, np.int64)
    pa = np.concatenate(pair_a) if pair_a else np.zeros(0, np.int64)
    piou = np.concatenate(pair_iou) if pair_iou else np.zeros(0, np.float32)
    plv = np.concatenate(pair_lv) if pair_lv else np.zeros(0, np.int8)
    best = np.zeros(G, np.float32)
    np.maximum.at(best, pg, piou)
    out.box_best = best
    if (best < lower).any():  # pragma: no cover - the candidate bound missed an anchor: a bug; stay exact anyway
        out.fallback[b_img[best < lower]] = True

    # 3. Per anchor: max IoU over GTs and its argmax (first GT in file order), low-quality promotion.
    tied = piou == best[pg]
    rel = (piou >= neg_t) | tied if cfg.low_quality else piou >= neg_t
    pg, pa, piou, plv, tied = pg[rel], pa[rel], piou[rel], plv[rel], tied[rel]
    img = b_img[pg]
    k_max = int(K.max()) + 1
    n_anchor_max = int(total.max()) + 1
    key = (img * n_anchor_max + pa) * k_max + b_k[pg]
    order = np.argsort(key)
    key = key[order]
    pg, pa, piou, plv, tied, img = pg[order], pa[order], piou[order], plv[order], tied[order], img[order]
    n_pairs = len(pg)
    anchor_key = key // k_max
    new = np.ones(n_pairs, bool)
    new[1:] = anchor_key[1:] != anchor_key[:-1]
    starts = np.flatnonzero(new)
    seg = np.cumsum(new) - 1
    if n_pairs:
        smax = np.maximum.reduceat(piou, starts)
        promoted = np.maximum.reduceat(tied.astype(np.int8), starts).astype(bool) if cfg.low_quality else None
        at_max = piou == smax[seg]
        pos_in = np.where(at_max, np.arange(n_pairs), n_pairs)
        arg_pair = np.minimum.reduceat(pos_in, starts)
        arg_g = pg[arg_pair]
    else:
        smax = np.zeros(0, np.float32)
        promoted = np.zeros(0, bool)
        arg_g = np.zeros(0, np.int64)
    s_img, s_lv = img[starts], plv[starts].astype(np.int64)
    if cfg.low_quality and n_pairs:
        # Promoted anchors whose IoU is below neg: their own argmax GT may be one not listed; check all GTs.
        low = np.flatnonzero(promoted & (smax < neg_t))
        if len(low):
            arg_g[low] = _full_argmax(boxes, K, b_img, pa[starts[low]], s_img[low], smax[low], geo, sel, s_lv[low])
        positive = (smax >= pos_t) | promoted
    else:
        positive = smax >= pos_t
    ignored = ~positive & (smax >= neg_t)
    overlap_counted = smax >= neg_t  # anchors overlapping a box with IoU >= neg
    extra = positive & ~overlap_counted  # promoted anchors with 0 < IoU < neg
    L = num_levels
    out.level_pos = np.bincount(s_img[positive] * L + s_lv[positive], minlength=n_img * L).reshape(n_img, L)
    out.level_ign = np.bincount(s_img[ignored] * L + s_lv[ignored], minlength=n_img * L).reshape(n_img, L)
    non_hard = overlap_counted | extra
    level_non_hard = np.bincount(s_img[non_hard] * L + s_lv[non_hard], minlength=n_img * L).reshape(n_img, L)
    out.box_pos = np.bincount(arg_g[positive], minlength=G)
    regular = np.bincount(arg_g[positive & (smax >= pos_t)], minlength=G)
    out.box_lq_only = (out.box_pos > 0) & (regular == 0)

    # 4. Anchors with IoU > 0 with some GT: union of the boxes' overlap rectangles, per (level, cell shape).
    union = _union_counts(boxes, b_img, K, n_img, geo, sel)
    out.level_easy = np.diff(lstart, axis=1) - union
    out.level_hard = union - level_non_hard
    out.positives = out.level_pos.sum(axis=1)
    out.ignored = out.level_ign.sum(axis=1)
    out.hard = out.level_hard.sum(axis=1)
    out.easy = out.level_easy.sum(axis=1)
    return out


def _axis_overlaps(
    g: np.ndarray, a: np.ndarray, start: np.ndarray, count: np.ndarray, stride: np.ndarray, offset: np.ndarray,
    cells: np.ndarray, boxes: np.ndarray, axis: int, integral: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One axis (0: x columns, 1: y rows) of the candidates (box ``g``, cell shape ``a``) with grid indices
    ``start .. start + count - 1``: one entry per (candidate, index) with its candidate ``owner``, box, cell shape,
    grid index, float32 overlap with the box and float32 anchor extent. ``stride``, ``offset``: (G,) per box."""
    owner = np.repeat(np.arange(len(start)), count)
    go, ao = g[owner], a[owner]
    idx = _ragged(start, count)
    st, of = stride[go], offset[go]
    lo = _coord(idx, st, of, cells[ao, axis], integral)
    hi = _coord(idx, st, of, cells[ao, axis + 2], integral)
    overlap = np.maximum(np.minimum(hi, boxes[go, axis + 2]) - np.maximum(lo, boxes[go, axis]), np.float32(0))
    return owner, go, ao, idx, overlap, hi - lo


def _full_argmax(
    boxes: np.ndarray, K: np.ndarray, b_img: np.ndarray, anchor: np.ndarray, a_img: np.ndarray, smax: np.ndarray,
    geo: Geometry, sel: np.ndarray, a_lv: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """argmax GT (global box index, first in file order) of the given anchors over all GTs of their image."""
    first_box = np.concatenate([[0], np.cumsum(K)])
    coords = _anchor_coords(anchor, a_img, a_lv, geo, sel)
    n = len(anchor)
    reps = K[a_img]
    owner = np.repeat(np.arange(n), reps)
    gidx = np.repeat(first_box[a_img], reps) + (np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps))
    iou = _iou_f32(boxes[gidx], *(c[owner] for c in coords))
    seg_start = np.cumsum(reps) - reps
    mx = np.maximum.reduceat(iou, seg_start)
    cand = np.where(iou == mx[owner], np.arange(len(iou)), len(iou))
    return gidx[np.minimum.reduceat(cand, seg_start)]


def _anchor_coords(
    anchor: np.ndarray, a_img: np.ndarray, a_lv: np.ndarray, geo: Geometry, sel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 (x1, y1, x2, y2) of flat anchor indices (within their image)."""
    x1 = np.empty(len(anchor), np.float32)
    y1, x2, y2 = np.empty_like(x1), np.empty_like(x1), np.empty_like(x1)
    rows = sel[a_img]
    for lv in np.unique(a_lv).tolist():
        m = a_lv == lv
        cells = geo.cells[lv]
        A = len(cells)
        r = rows[m]
        local = anchor[m] - geo.level_start[r, lv]
        a = local % A
        loc = local // A
        gw = geo.gw[r, lv]
        i, j = loc // gw, loc % gw
        x1[m] = _coord(j, geo.sw[r, lv], geo.ox[r, lv], cells[a, 0], geo.integral)
        y1[m] = _coord(i, geo.sh[r, lv], geo.oy[r, lv], cells[a, 1], geo.integral)
        x2[m] = _coord(j, geo.sw[r, lv], geo.ox[r, lv], cells[a, 2], geo.integral)
        y2[m] = _coord(i, geo.sh[r, lv], geo.oy[r, lv], cells[a, 3], geo.integral)
    return x1, y1, x2, y2


def _union_counts(
    boxes: np.ndarray, b_img: np.ndarray, K: np.ndarray, n_img: int, geo: Geometry, sel: np.ndarray
) -> np.ndarray:
    """(n_img, L) anchors with IoU > 0 with at least one box."""
    num_levels = geo.num_levels
    out = np.zeros((n_img, num_levels), np.int64)
    # Sort boxes by x1 within each image (the order of their column ranges for every cell shape).
    perm = np.lexsort((boxes[:, 0], b_img))
    bx = boxes[perm]
    bi = b_img[perm]
    first_box = np.concatenate([[0], np.cumsum(K)])
    ks = np.unique(K[K > 0])
    for lv in range(num_levels):
        cells = geo.cells[lv]
        A = len(cells)
        g_sw, g_sh = geo.sw[sel][bi, lv], geo.sh[sel][bi, lv]
        g_ox, g_oy = geo.ox[sel][bi, lv], geo.oy[sel][bi, lv]
        g_gw, g_gh = geo.gw[sel][bi, lv], geo.gh[sel][bi, lv]
        x0 = np.empty((len(bx), A), np.int32)
        x1, y0, y1 = np.empty_like(x0), np.empty_like(x0), np.empty_like(x0)
        for a in range(A):
            x0[:, a], x1[:, a] = _overlap_range(
                bx[:, 0], bx[:, 2], g_sw, g_ox, cells[a, 0], cells[a, 2], g_gw, geo.integral
            )
            y0[:, a], y1[:, a] = _overlap_range(
                bx[:, 1], bx[:, 3], g_sh, g_oy, cells[a, 1], cells[a, 3], g_gh, geo.integral
            )
        gh_l = geo.gh[sel][:, lv]
        for k in ks.tolist():
            imgs = np.flatnonzero(k == K)
            idx = first_box[imgs][:, None] + np.arange(k)[None, :]  # (P, k)
            rows = int(gh_l[imgs].max())
            # Bound memory: P * A * slabs * k elements per batch.
            slabs = min(2 * k - 1, rows)
            step = max(1, 4_000_000 // max(1, A * slabs * k))
            for s in range(0, len(imgs), step):
                sl = slice(s, s + step)
                ii = idx[sl]
                counts = union_cells(
                    x0[ii].transpose(0, 2, 1),
                    x1[ii].transpose(0, 2, 1),
                    y0[ii].transpose(0, 2, 1),
                    y1[ii].transpose(0, 2, 1),
                    rows=rows,
                )
                out[imgs[sl], lv] = counts.sum(axis=1)
    return out
