"""The scan's compiled per-image kernel (numba): candidate anchors, exact float32 IoUs, the matcher's labels and the
union of overlap rectangles, image by image, with no dense IoU matrix.

For each image (:func:`scan_images`; the method is in :mod:`explorer.dataset.scan`):

1. a lower bound of each box's best IoU, its IoU with the anchors centred nearest to its centre;
2. the candidate anchors that can reach the threshold ``t = min(lower, neg)`` (a few cells around the box per
   level and cell shape) and their exact float32 IoUs, in ``torchvision.ops.box_iou``'s order of operations; per
   anchor the max IoU and its first GT in file order (boxes are visited in file order, ties keep the first);
3. torchvision's ``Matcher`` on those anchors: positive (IoU >= pos, or tied with a GT's best IoU when low-quality
   matches are allowed), ignored, or hard negative; a promoted anchor below ``neg`` takes its argmax over all GTs;
4. the anchors with IoU > 0 with some box: per (level, cell shape) the union of the boxes' rectangles of grid
   indices (:func:`overlap_range`), counted by a sweep over horizontal slabs (:func:`union_area`). The rest are
   easy negatives.

Images the kernel cannot prove exact (a box thinner than :data:`TINY` px or not finite, a box overlapping no anchor)
are flagged ``fallback`` and recounted by the reference path. Arithmetic is IEEE (no fast-math, no contraction):
every float32 operation is the one torchvision performs. The kernels release the GIL, so chunks run in threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from explorer.boxes import iou_from_areas

#: Box width or height (input pixels) below which an image goes through the reference path.
TINY = 1e-3

#: Cached compilation (one compile per machine), no GIL (chunks run in threads), IEEE division (x / 0 is inf or nan,
#: as in numpy and torch, not an exception).
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}

#: torchvision's float32 order of the IoU from the areas, the one definition the whole project uses.
_iou_from_areas = njit(**_JIT)(iou_from_areas)


@njit(**_JIT)
def coord(idx, stride, offset, cell, integral):
    """float32 anchor coordinate of grid index ``idx``, as ``AnchorGenerator`` computes it: float32(idx * stride +
    offset) + cell, a float32 add; on an integral grid (integer cells, zero offsets, coordinates < 2**24) the exact
    integer idx * stride + cell."""
    if integral:
        return np.float32(np.float64(idx * stride) + np.float64(cell))
    return np.float32(idx * stride + offset) + cell


@njit(**_JIT)
def _reaches(j, stride, offset, cell, bound, strict):
    """Whether the float32 coordinate of grid index j passes ``bound`` (> when ``strict``, else >=)."""
    v = coord(j, stride, offset, cell, False)
    return v > bound if strict else v >= bound


@njit(**_JIT)
def _first_reaching(bound, stride, offset, cell, n, est, strict):
    """Smallest j in [0, n] whose coordinate passes ``bound`` (monotone in j), from an estimate a few steps off."""
    j = min(max(est, 0), n)
    while j > 0 and _reaches(j - 1, stride, offset, cell, bound, strict):
        j -= 1
    while j < n and not _reaches(j, stride, offset, cell, bound, strict):
        j += 1
    return j


@njit(**_JIT)
def overlap_range(lo, hi, stride, offset, cell_lo, cell_hi, n, integral):
    """Grid indices [first, end) whose anchor extent [c(j) + cell_lo, c(j) + cell_hi] overlaps (lo, hi) with a
    positive length, exactly as float32 compares: anchor_hi > lo and anchor_lo < hi.

    On an integral grid in integer arithmetic: j * s + cell_hi > lo  <=>  j >= ceil((floor(lo) + 1 - cell_hi) / s),
    and j * s + cell_lo >= hi  <=>  j >= ceil((ceil(hi) - cell_lo) / s). Otherwise a search from the float64
    estimate on the float32 coordinates."""
    if integral:
        big = 2.0**40  # coordinates far outside any grid, clipped before the integer conversion
        lo_i = np.int64(np.floor(min(max(np.float64(lo), -big), big)))
        hi_i = np.int64(np.ceil(min(max(np.float64(hi), -big), big)))
        c_lo, c_hi = np.int64(cell_lo), np.int64(cell_hi)
        first = min(max(-((c_hi - lo_i - 1) // stride), 0), n)
        end = min(max(-((c_lo - hi_i) // stride), 0), n)
        return first, max(end, first)
    est_first = np.int64(np.floor((np.float64(lo) - offset - np.float64(cell_hi)) / stride)) + 1
    est_end = np.int64(np.ceil((np.float64(hi) - offset - np.float64(cell_lo)) / stride))
    first = _first_reaching(lo, stride, offset, cell_hi, n, est_first, True)
    end = _first_reaching(hi, stride, offset, cell_lo, n, est_end, False)
    return first, max(end, first)


@njit(**_JIT)
def union_area(x0, x1, y0, y1, m, rows, ey):
    """Cells covered by the union of the ``m`` rectangles [x0, x1) x [y0, y1) (int64 arrays, non-empty, in
    non-decreasing order of x0): a sweep over the slabs between consecutive y edges (or over single rows when
    ``rows`` < 2m - 1; all y lie in [0, rows]), in each the running-maximum merge of the x intervals.
    ``ey``: scratch of at least 2m int64."""
    if m == 0:
        return 0
    use_rows = rows < 2 * m - 1
    if use_rows:
        n_slabs = rows
    else:
        n_e = 0
        for k in range(m):  # insertion sort of the 2m y edges
            for v in (y0[k], y1[k]):
                p = n_e
                while p > 0 and ey[p - 1] > v:
                    ey[p] = ey[p - 1]
                    p -= 1
                ey[p] = v
                n_e += 1
        n_slabs = 2 * m - 1
    total = 0
    for s in range(n_slabs):
        if use_rows:
            lo, hi = s, s + 1
        else:
            lo, hi = ey[s], ey[s + 1]
            if hi == lo:
                continue
        run = x0[0]
        covered = 0
        for k in range(m):
            if y0[k] <= lo and y1[k] >= hi:
                start = max(x0[k], run)
                if x1[k] > start:
                    covered += x1[k] - start
                    run = x1[k]
        total += covered * (hi - lo)
    return total


@njit(**_JIT)
def _iou(bx1, by1, bx2, by2, area_b, ax1, ay1, ax2, ay2):
    """float32 IoU of a GT (``boxes1``, its area ``area_b``) and an anchor, in ``torchvision.ops.box_iou``'s order:
    inter / (area1 + area2 - inter)."""
    iw = max(min(ax2, bx2) - max(ax1, bx1), np.float32(0))
    ih = max(min(ay2, by2) - max(ay1, by1), np.float32(0))
    return _iou_from_areas(iw * ih, area_b, (ax2 - ax1) * (ay2 - ay1))


@njit(**_JIT)
def _anchor(geo, i, lv, a, row, col):
    """float32 (x1, y1, x2, y2) of image i's anchor (level, cell shape, grid row, grid column)."""
    _, _, sh, sw, oy, ox, _, cells, _, integral = geo
    c = cells[lv, a]
    return (
        coord(col, sw[i, lv], ox[i, lv], c[0], integral), coord(row, sh[i, lv], oy[i, lv], c[1], integral),
        coord(col, sw[i, lv], ox[i, lv], c[2], integral), coord(row, sh[i, lv], oy[i, lv], c[3], integral),
    )  # fmt: skip


@njit(**_JIT)
def _lower_best_iou(box, geo, i):
    """float32 lower bound of a box's best IoU: its IoU with the anchors centred nearest to its centre, the max over
    cell shapes per level (a level with a NaN IoU counts 0), the max over levels."""
    gh, gw, sh, sw, oy, ox, _, cells, n_cells, _ = geo
    bx1, by1, bx2, by2 = box[0], box[1], box[2], box[3]
    area_b = (bx2 - bx1) * (by2 - by1)
    bcx = (np.float64(bx1) + np.float64(bx2)) / 2
    bcy = (np.float64(by1) + np.float64(by2)) / 2
    lower = np.float32(0)
    for lv in range(cells.shape[0]):
        best = np.float32(-np.inf)
        nan = False
        for a in range(n_cells[lv]):
            c = cells[lv, a]
            c0x = (np.float64(c[0]) + np.float64(c[2])) / 2
            c0y = (np.float64(c[1]) + np.float64(c[3])) / 2
            col = np.int64(min(max(np.rint((bcx - ox[i, lv] - c0x) / sw[i, lv]), 0), gw[i, lv] - 1))
            row = np.int64(min(max(np.rint((bcy - oy[i, lv] - c0y) / sh[i, lv]), 0), gh[i, lv] - 1))
            ax1, ay1, ax2, ay2 = _anchor(geo, i, lv, a, row, col)
            iou = _iou(bx1, by1, bx2, by2, area_b, ax1, ay1, ax2, ay2)
            if iou != iou:
                nan = True
            elif iou > best:
                best = iou
        if not nan and best > lower:
            lower = best
    return lower


@njit(**_JIT)
def _box_candidates(boxes, g, geo, i, t, scratch, nt):
    """Box g's anchors with IoU >= t (float64, slightly below the float32 threshold it stands for) and their exact
    float32 IoU: each goes into the image's scratch (max IoU and first GT per anchor, the anchors touched) and
    into the box's pair list. Returns (the box's best IoU, anchors touched so far, the box's pairs)."""
    gh, gw, sh, sw, oy, ox, lstart, cells, n_cells, integral = geo
    smax, sarg, _, touched, touched_lv, pair_anc, pair_iou = scratch
    bx1, by1, bx2, by2 = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
    area_b = (bx2 - bx1) * (by2 - by1)
    bcx = (np.float64(bx1) + np.float64(bx2)) / 2
    bcy = (np.float64(by1) + np.float64(by2)) / 2
    bw, bh = np.float64(bx2) - np.float64(bx1), np.float64(by2) - np.float64(by1)
    t32 = np.float32(t)
    best = np.float32(0)
    nb = 0
    for lv in range(cells.shape[0]):
        A = n_cells[lv]
        for a in range(A):
            c = cells[lv, a]
            cw, ch = np.float64(c[2]) - np.float64(c[0]), np.float64(c[3]) - np.float64(c[1])
            # IoU >= t  <=>  inter >= t (area_a + area_b) / (1 + t), and inter <= x-overlap * min(heights)
            need = t * (cw * ch + bw * bh) / (1 + t)
            ox_min, oy_min = need / min(ch, bh), need / min(cw, bw)
            if not (ox_min <= min(cw, bw) + 1e-3 and oy_min <= min(ch, bh) + 1e-3):
                continue
            dx = (cw + bw) / 2 - ox_min + 1e-3
            dy = (ch + bh) / 2 - oy_min + 1e-3
            cx = bcx - ox[i, lv] - (np.float64(c[0]) + np.float64(c[2])) / 2
            cy = bcy - oy[i, lv] - (np.float64(c[1]) + np.float64(c[3])) / 2
            col_lo = np.int64(max(np.ceil((cx - dx) / sw[i, lv]), 0))
            col_hi = np.int64(min(np.floor((cx + dx) / sw[i, lv]), gw[i, lv] - 1))
            row_lo = np.int64(max(np.ceil((cy - dy) / sh[i, lv]), 0))
            row_hi = np.int64(min(np.floor((cy + dy) / sh[i, lv]), gh[i, lv] - 1))
            for row in range(row_lo, row_hi + 1):
                ay1 = coord(row, sh[i, lv], oy[i, lv], c[1], integral)
                ay2 = coord(row, sh[i, lv], oy[i, lv], c[3], integral)
                ih = max(min(ay2, by2) - max(ay1, by1), np.float32(0))
                ah = ay2 - ay1
                row_anchor = lstart[i, lv] + row * gw[i, lv] * A + a
                for col in range(col_lo, col_hi + 1):
                    ax1 = coord(col, sw[i, lv], ox[i, lv], c[0], integral)
                    ax2 = coord(col, sw[i, lv], ox[i, lv], c[2], integral)
                    inter = max(min(ax2, bx2) - max(ax1, bx1), np.float32(0)) * ih
                    iou = _iou_from_areas(inter, area_b, (ax2 - ax1) * ah)
                    if not iou >= t32:
                        continue
                    anc = row_anchor + col * A
                    if smax[anc] < 0:  # first pair of this anchor
                        touched[nt], touched_lv[nt] = anc, lv
                        nt += 1
                        smax[anc], sarg[anc] = iou, g
                    elif iou > smax[anc]:  # strictly: at a tie the earlier GT (file order) stays
                        smax[anc], sarg[anc] = iou, g
                    best = max(best, iou)
                    pair_anc[nb], pair_iou[nb] = anc, iou
                    nb += 1
    return best, nt, nb


@njit(**_JIT)
def _argmax_all(boxes, g0, g1, geo, i, lv, anc):
    """The first GT in file order (among boxes g0..g1 - 1) with the anchor's max IoU, over all of them."""
    _, gw, _, _, _, _, lstart, _, n_cells, _ = geo
    A = n_cells[lv]
    local = anc - lstart[i, lv]
    ax1, ay1, ax2, ay2 = _anchor(geo, i, lv, local % A, (local // A) // gw[i, lv], (local // A) % gw[i, lv])
    arg, best = g0, np.float32(-1)
    for g in range(g0, g1):
        b = boxes[g]
        iou = _iou(b[0], b[1], b[2], b[3], (b[2] - b[0]) * (b[3] - b[1]), ax1, ay1, ax2, ay2)
        if iou > best:
            arg, best = g, iou
    return arg


@njit(**_JIT)
def _union_per_level(boxes, g0, g1, geo, i, rects, ey, out):
    """Image i's anchors with IoU > 0 with some box, per level, into ``out`` (L,): per cell shape the union of the
    boxes' rectangles of grid indices. ``rects``: (4, K) int64 scratch; ``ey``: (2K,) int64 scratch."""
    gh, gw, sh, sw, oy, ox, _, cells, n_cells, integral = geo
    order = np.argsort(boxes[g0:g1, 0]) + g0  # by left edge: the order of their column ranges for every shape
    for lv in range(cells.shape[0]):
        out[lv] = 0
        for a in range(n_cells[lv]):
            c = cells[lv, a]
            m = 0
            for g in order:
                x0, x1 = overlap_range(boxes[g, 0], boxes[g, 2], sw[i, lv], ox[i, lv], c[0], c[2], gw[i, lv], integral)
                y0, y1 = overlap_range(boxes[g, 1], boxes[g, 3], sh[i, lv], oy[i, lv], c[1], c[3], gh[i, lv], integral)
                if x1 > x0 and y1 > y0:
                    rects[0, m], rects[1, m], rects[2, m], rects[3, m] = x0, x1, y0, y1
                    m += 1
            out[lv] += union_area(rects[0], rects[1], rects[2], rects[3], m, gh[i, lv], ey)


@njit(**_JIT)
def _has_thin_box(boxes, g0, g1):
    """Whether a box among g0..g1 - 1 is thinner than :data:`TINY` px or not finite (the reference path's)."""
    tiny = np.float32(TINY)
    for g in range(g0, g1):
        b = boxes[g]
        finite = np.isfinite(b[0]) and np.isfinite(b[1]) and np.isfinite(b[2]) and np.isfinite(b[3])
        if not finite or b[2] - b[0] < tiny or b[3] - b[1] < tiny:
            return True
    return False


@njit(**_JIT)
def _match_image(
    boxes, g0, g1, geo, i, pos_t, neg_t, low_quality, scratch, level_pos, level_ign, box_pos, box_best, regular
):
    """torchvision's ``Matcher`` on image i's candidate pairs: fills its positives and ignored anchors per level,
    each box's best IoU, positives and regular (IoU >= pos) positives. Returns True when the image must go through
    the reference path instead (a box overlapping no anchor); the scratch is left reset either way."""
    smax, sarg, sprom, touched, touched_lv, pair_anc, pair_iou = scratch
    nt = 0
    fallback = False
    for g in range(g0, g1):  # candidate pairs box by box in file order; tied pairs promote their anchor
        lower = _lower_best_iou(boxes[g], geo, i)
        if lower <= 0:  # overlaps no anchor
            fallback = True
            break
        t = min(np.float64(lower), np.float64(neg_t)) if low_quality else np.float64(neg_t)
        best, nt, nb = _box_candidates(boxes, g, geo, i, t * (1 - 1e-4), scratch, nt)  # slack: a superset
        box_best[g] = best
        if best < lower:  # pragma: no cover - the candidate bound missed an anchor: a bug; stay exact anyway
            fallback = True
        if low_quality:
            for k in range(nb):
                if pair_iou[k] == best:
                    sprom[pair_anc[k]] = True
    for k in range(nt):  # the labels of the touched anchors; their scratch is reset for the next image
        anc, lv = touched[k], touched_lv[k]
        m = smax[anc]
        smax[anc] = -1
        promoted, sprom[anc] = low_quality and sprom[anc], False
        if fallback:
            continue
        if m >= pos_t or promoted:
            # a promoted anchor below neg may have its argmax GT among those without a pair: compare all
            arg = _argmax_all(boxes, g0, g1, geo, i, lv, anc) if m < neg_t else sarg[anc]
            level_pos[i, lv] += 1
            box_pos[arg] += 1
            regular[arg] += m >= pos_t
        elif m >= neg_t:
            level_ign[i, lv] += 1
    return fallback


@njit(**_JIT)
def scan_images(
    boxes, first, geo, pos_t, neg_t, low_quality,
    level_pos, level_ign, level_hard, level_easy, box_pos, box_best, box_lq, fallback,
):  # fmt: skip
    """Exact label counts of n images, written into the output arrays.

    Args:
        boxes: (G, 4) float32 xyxy input-scale non-crowd boxes, grouped by image, file order within an image.
        first: (n + 1,) int64 each image's first box.
        geo: the images' geometry, (gh, gw, sh, sw, oy, ox, lstart, cells, n_cells, integral): (n, L) int64 grids
            and strides, (n, L) float64 offsets, (n, L + 1) int64 first anchor of each level then the total,
            (L, A_max, 4) float32 cell anchors and (L,) int64 how many per level, whether the grid is integral
            (integer cells, zero offsets, coordinates < 2**24).
        pos_t, neg_t: float32 thresholds; low_quality: allow low-quality matches.
        level_pos, level_ign, level_hard, level_easy: (n, L) int64 zeros; box_pos (G,) int64, box_best (G,)
            float32, box_lq (G,) bool, fallback (n,) bool: filled.
    """
    lstart, cells = geo[6], geo[7]
    n, L = len(first) - 1, cells.shape[0]
    n_anchor_max, k_max = 1, 1
    for i in range(n):
        n_anchor_max = max(n_anchor_max, lstart[i, L])
        k_max = max(k_max, first[i + 1] - first[i])
    # Per anchor of the image: max IoU over its pairs (-1: untouched), its first GT, tied with a GT's best IoU; the
    # anchors touched and their levels; one box's pairs. An anchor is touched once per image and paired once per box.
    scratch = (
        np.full(n_anchor_max, np.float32(-1)), np.zeros(n_anchor_max, np.int64), np.zeros(n_anchor_max, np.bool_),
        np.empty(n_anchor_max, np.int64), np.empty(n_anchor_max, np.int64),
        np.empty(n_anchor_max, np.int64), np.empty(n_anchor_max, np.float32),
    )  # fmt: skip
    regular = np.zeros(len(boxes), np.int64)  # positives with IoU >= pos, per box
    rects, ey, union = np.empty((4, k_max), np.int64), np.empty(2 * k_max, np.int64), np.empty(L, np.int64)
    for i in range(n):
        for lv in range(L):
            level_easy[i, lv] = lstart[i, lv + 1] - lstart[i, lv]
        g0, g1 = first[i], first[i + 1]
        if g1 == g0:
            continue
        if _has_thin_box(boxes, g0, g1):
            fallback[i] = True
            continue
        # 1-3. Candidate pairs box by box in file order, then the matcher's labels of the anchors they touch.
        if _match_image(
            boxes, g0, g1, geo, i, pos_t, neg_t, low_quality, scratch, level_pos, level_ign, box_pos, box_best, regular
        ):
            fallback[i] = True
            continue
        # 4. Anchors with IoU > 0 with some box; the others are easy negatives.
        _union_per_level(boxes, g0, g1, geo, i, rects, ey, union)
        for lv in range(L):
            level_easy[i, lv] -= union[lv]
            level_hard[i, lv] = union[lv] - level_pos[i, lv] - level_ign[i, lv]
    for g in range(len(boxes)):
        box_lq[g] = box_pos[g] > 0 and regular[g] == 0
