"""The scan's fast exact path on the CPU: a chunk of images through the compiled kernel
(:func:`explorer.dataset.scan_kernel.scan_images`), with the geometry gathered for the chunk. Everything here is
internal to :func:`explorer.dataset.scan.scan_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explorer.dataset.scan_geometry import Geometry, geometry
from explorer.dataset.scan_kernel import scan_images

if TYPE_CHECKING:
    from explorer.dataset.scan_config import ScanConfig

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


def stacked_cells(geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The cell anchors of every level in one (L, A_max, 4) float32 array (padded with zeros), and (L,) how many
    each level has."""
    n_cells = np.array([len(c) for c in geo.cells], np.int64)
    out = np.zeros((geo.num_levels, int(n_cells.max(initial=0)), 4), np.float32)
    for lv, c in enumerate(geo.cells):
        out[lv, : len(c)] = c
    return out, n_cells


def scan_chunk(
    boxes: np.ndarray, b_img: np.ndarray, n_img: int, geo: Geometry, sel: np.ndarray, cfg: ScanConfig,
) -> ChunkOut:  # fmt: skip
    """Exact counts for n_img images (geometry rows ``sel``) with G non-crowd input-scale boxes.

    boxes: (G, 4) float32 grouped by image (b_img non-decreasing), in file order within an image.
    """
    L = geo.num_levels
    first = np.concatenate([[0], np.cumsum(np.bincount(b_img, minlength=n_img))]).astype(np.int64)
    level = {key: np.zeros((n_img, L), np.int64) for key in PER_LEVEL}
    G = len(boxes)
    box_pos, box_best, box_lq = np.zeros(G, np.int64), np.zeros(G, np.float32), np.zeros(G, bool)
    fallback = np.zeros(n_img, bool)
    cells, n_cells = stacked_cells(geo)
    g = geo.grids(sel)
    geo_chunk = (g.gh, g.gw, g.sh, g.sw, g.oy, g.ox, g.level_start, cells, n_cells, bool(geo.integral))
    scan_images(
        np.ascontiguousarray(boxes, np.float32), first, geo_chunk, np.float32(cfg.pos_thresh),
        np.float32(cfg.neg_thresh), bool(cfg.low_quality), level["level_pos"], level["level_ign"],
        level["level_hard"], level["level_easy"], box_pos, box_best, box_lq, fallback,
    )  # fmt: skip
    return ChunkOut(
        positives=level["level_pos"].sum(axis=1), ignored=level["level_ign"].sum(axis=1),
        hard=level["level_hard"].sum(axis=1), easy=level["level_easy"].sum(axis=1), **level,
        box_pos=box_pos, box_best=box_best, box_lq_only=box_lq, fallback=fallback,
    )  # fmt: skip


def warm_up() -> None:
    """Compile the kernel now, or load it from numba's cache (a fraction of a second): about 10 s the first time on a
    machine. For callers that must not pay it later: before a timed search, or in the background when the app starts.
    One tiny image through :func:`scan_chunk`, so the compiled types are those every scan uses."""
    from explorer.dataset.scan_config import ScanConfig

    cfg = ScanConfig()
    geo = geometry(np.array([64]), np.array([64]), cfg.anchors)
    scan_chunk(np.array([[8, 8, 40, 40]], np.float32), np.zeros(1, np.int64), 1, geo, np.arange(1), cfg)
