"""The scan's geometry: per image the input size, box ratios and anchor grids.

Anchors depend only on the input size: an anchor is (level, cell shape a, row i, column j), and its float32
coordinates are computed from (i, j) exactly as torchvision's ``AnchorGenerator`` does
(:func:`explorer.dataset.scan_kernel.coord`). Images are grouped by their exact (height, width) (:func:`size_groups`),
so a dataset of many sizes costs one grid per size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from explorer.anchors.grid import AnchorConfig, level_grids, resized_size
from explorer.boxes import scale_ratios


@dataclass
class SizeGrids:
    """Anchor grids per row (a distinct image size, or an image): per level (R, L) grid size and stride (int64),
    centre offsets (float64); (R, L + 1) the first anchor of each level, then the total."""

    gh: np.ndarray
    gw: np.ndarray
    sh: np.ndarray
    sw: np.ndarray
    oy: np.ndarray
    ox: np.ndarray
    level_start: np.ndarray

    def take(self, rows: np.ndarray) -> SizeGrids:
        """The grids of the given rows."""
        return SizeGrids(*(getattr(self, f.name)[rows] for f in fields(self)))


@dataclass
class Geometry:
    """Per image (I,) input size and box ratios; anchor grids per distinct image size (``sizes``, U rows) and each
    image's row among them (``size_index``), so memory grows with the sizes, not the images; cell anchors per
    level."""

    input_h: np.ndarray
    input_w: np.ndarray
    ratio_h: np.ndarray  # float32
    ratio_w: np.ndarray  # float32
    size_index: np.ndarray  # (I,) int64 row of each image in ``sizes``
    sizes: SizeGrids
    level_numbers: tuple[int, ...]
    cells: list[np.ndarray]  # per level (A, 4) float32 cell anchors
    integral: bool = False  # integer cell anchors, zero offsets, coordinates < 2**24 (torchvision)

    @property
    def num_levels(self) -> int:
        return len(self.cells)

    @property
    def level_start(self) -> np.ndarray:
        """(I, L + 1) each image's first anchor of each level, then its total."""
        return self.sizes.level_start[self.size_index]

    def grids(self, images: np.ndarray | slice) -> SizeGrids:
        """The anchor grids of the given images, one row each."""
        return self.sizes.take(self.size_index[images])


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
    """The :class:`Geometry` of images of the given original sizes (I,) under ``config``'s resize rule and anchors.

    Raises:
        ElongatedImageError: an image resizes to 0 px on one side.
    """
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
    level_start = np.zeros((len(uniq), num_levels + 1), np.int64)
    np.cumsum(counts, axis=1, out=level_start[:, 1:])
    ratio_h, ratio_w = scale_ratios(heights, widths, input_h, input_w)
    integral = (
        all(bool(np.all(c == np.round(c))) for c in cells)
        and not np.any(grid_rows[:, 4:6])  # every distinct size's row belongs to some image
        and max(int(input_h.max(initial=0)), int(input_w.max(initial=0))) + 4096 < 2**24
        and all(float(np.abs(c).max(initial=0)) < 2**20 for c in cells)
    )
    grid = [grid_rows[:, k].astype(np.int64) for k in range(4)]
    return Geometry(
        integral=integral,
        input_h=input_h,
        input_w=input_w,
        ratio_h=ratio_h,
        ratio_w=ratio_w,
        size_index=np.asarray(inv, np.int64) if n else np.zeros(0, np.int64),
        sizes=SizeGrids(*grid, oy=grid_rows[:, 4].copy(), ox=grid_rows[:, 5].copy(), level_start=level_start),
        level_numbers=config.levels,
        cells=cells,
    )
