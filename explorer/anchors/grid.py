"""Anchor configurations, feature-map sizes and anchor grids for RetinaNet-style detectors.

Three conventions are modelled (see shared/reference.md §4-5):

- ``"torchvision"``: integer sizes, cell anchors rounded half-to-even, ratio-major order, the stride of a level is
  ``padded_size // grid_size`` (so P6/P7 get strides 61/114 for an 800 px side), resize by ``floor(side * scale)``.
  :func:`generate_anchors` equals ``torchvision.models.detection.anchor_utils.AnchorGenerator`` exactly.
- ``"mmdet"``: float sizes, no rounding, ratio-major, fixed strides, resize rounds to nearest.
- ``"detectron2"``: float sizes, no rounding, **size-major**, fixed strides, resize rounds to nearest.

In all three, aspect ratio is h / w, the first anchor is centred on pixel (0, 0) and feature maps follow the
convolution arithmetic ``n -> ceil(n / 2)`` per stride-2 op on the image padded to a multiple of 32.

Example:
    >>> cfg = AnchorConfig()
    >>> [g.grid_hw for g in level_grids(800, 800, cfg)]
    [(100, 100), (50, 50), (25, 25), (13, 13), (7, 7)]
    >>> int(level_offsets(level_grids(800, 800, cfg))[-1])
    120087

The anchor counts, and the conventions people quote for them, are in :mod:`explorer.anchors.counts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from explorer.boxes import resize_factor, resized_hw

CONVENTIONS: tuple[str, ...] = ("torchvision", "mmdet", "detectron2")

#: Largest anchor size, stride, ``min_size`` or ``max_size`` (px) a configuration may ask for: beyond it the grid
#: arithmetic is meaningless (an input side of 10**30 px, a stride of 1e30). Anchor sizes start at 1 px.
MAX_CONFIG_PX = 100_000

#: Aspect ratios (h / w) must lie in [1 / MAX_ASPECT_RATIO, MAX_ASPECT_RATIO]; real detectors use 0.1 .. 10.
MAX_ASPECT_RATIO = 1000.0

#: torchvision's ``_default_anchorgen`` sizes: (x, int(x * 2**(1/3)), int(x * 2**(2/3))) for x in 32..512.
TORCHVISION_SIZES: tuple[tuple[float, ...], ...] = (
    (32, 40, 50),
    (64, 80, 101),
    (128, 161, 203),
    (256, 322, 406),
    (512, 645, 812),
)


def octave_sizes(
    base_sizes: tuple[float, ...] = (32, 64, 128, 256, 512), scales_per_octave: int = 3, *, integer: bool = True
) -> tuple[tuple[float, ...], ...]:
    """Anchor sizes per level: ``base * 2**(k / scales_per_octave)`` for k in 0..scales_per_octave-1.

    Args:
        base_sizes: the first size of each level (RetinaNet: 4 * stride).
        scales_per_octave: sizes per level (RetinaNet: 3).
        integer: truncate with ``int()`` as torchvision does (50.79 -> 50); ``False`` keeps floats (mmdet,
            detectron2).

    Example:
        >>> octave_sizes((32,), 3)
        ((32, 40, 50),)
    """
    if scales_per_octave < 1:
        raise ValueError(f"scales_per_octave must be >= 1, got {scales_per_octave}")
    if any(b <= 0 for b in base_sizes):
        raise ValueError(f"base sizes must be positive, got {base_sizes}")
    out = []
    for base in base_sizes:
        sizes = [base * 2.0 ** (k / scales_per_octave) for k in range(scales_per_octave)]
        out.append(tuple(int(s) for s in sizes) if integer else tuple(float(s) for s in sizes))
    return tuple(out)


@dataclass(frozen=True)
class AnchorConfig:
    """An anchor configuration and the input-size rules of one framework.

    Attributes:
        sizes: anchor sizes (sqrt of area, px) per level, P3 first.
        aspect_ratios: h / w ratios, shared by all levels (0.5 is a wide box).
        strides: nominal stride of each level (8..128); torchvision recomputes them as padded // grid.
        min_size, max_size: resize so the short side is ``min_size`` unless the long side would exceed ``max_size``.
        size_divisible: pad the resized image up to a multiple of this (1 = no padding).
        convention: ``"torchvision"``, ``"mmdet"`` or ``"detectron2"``.
        center_offset: anchor centre offset as a fraction of the stride (0.0 in all three default configs).
        resize: ``False`` feeds the image at its own size (only padding is applied).
    """

    sizes: tuple[tuple[float, ...], ...] = TORCHVISION_SIZES
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    min_size: int = 800
    max_size: int = 1333
    size_divisible: int = 32
    convention: str = "torchvision"
    center_offset: float = 0.0
    resize: bool = field(default=True)

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {self.convention!r}")
        if not self.sizes or any(len(s) == 0 for s in self.sizes):
            raise ValueError(f"sizes must give at least one size per level, got {self.sizes}")
        if not all(_in_range(s, 1, MAX_CONFIG_PX) for level in self.sizes for s in level):
            raise ValueError(f"anchor sizes must be positive numbers from 1 to {MAX_CONFIG_PX:,} px, got {self.sizes}")
        if len(self.sizes) != len(self.strides):
            raise ValueError(f"{len(self.sizes)} levels of sizes but {len(self.strides)} strides")
        if not all(_in_range(s, 1, MAX_CONFIG_PX) and int(s) == s for s in self.strides):
            raise ValueError(f"strides must be positive integers up to {MAX_CONFIG_PX:,}, got {self.strides}")
        low = 1.0 / MAX_ASPECT_RATIO
        if not self.aspect_ratios or not all(_in_range(r, low, MAX_ASPECT_RATIO) for r in self.aspect_ratios):
            raise ValueError(
                f"aspect ratios must be positive numbers in [{low:g}, {MAX_ASPECT_RATIO:g}], got {self.aspect_ratios}"
            )
        if self.resize and not (
            _in_range(self.min_size, 1, MAX_CONFIG_PX) and _in_range(self.max_size, 1, MAX_CONFIG_PX)
        ):
            raise ValueError(
                f"min_size and max_size must be >= 1 and at most {MAX_CONFIG_PX:,}, "
                f"got {self.min_size}, {self.max_size}"
            )
        if self.size_divisible < 1:
            raise ValueError(f"size_divisible must be >= 1, got {self.size_divisible}")
        if not 0.0 <= self.center_offset < 1.0:
            raise ValueError(f"center_offset must be in [0, 1), got {self.center_offset}")

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    @property
    def levels(self) -> tuple[int, ...]:
        """Pyramid level numbers (3..7 for strides 8..128)."""
        return tuple(round(math.log2(s)) for s in self.strides)

    def anchors_per_location(self) -> list[int]:
        """A per level: len(sizes[l]) * len(aspect_ratios)."""
        return [len(s) * len(self.aspect_ratios) for s in self.sizes]


def _in_range(value: float, low: float, high: float) -> bool:
    """``low <= value <= high`` for a real number (False for NaN, infinity, or something that is not a number)."""
    try:
        return math.isfinite(value) and low <= value <= high
    except (TypeError, OverflowError):  # OverflowError: an int too large for a float
        return False


def default_config(convention: str = "torchvision", **overrides: object) -> AnchorConfig:
    """RetinaNet's default anchors in one convention: torchvision's integer sizes, or float sizes for the others.

    Example:
        >>> default_config("mmdet").sizes[0]
        (32.0, 40.31747359663594, 50.79683366298238)
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    sizes = TORCHVISION_SIZES if convention == "torchvision" else octave_sizes(integer=False)
    kwargs: dict = {"sizes": sizes, "convention": convention}
    kwargs.update(overrides)
    return AnchorConfig(**kwargs)


@dataclass(frozen=True)
class LevelGrid:
    """One pyramid level's anchor grid.

    Attributes:
        level: pyramid level (3..7).
        grid_hw: feature-map size (gh, gw).
        stride_hw: distance between anchor centres (sh, sw) in input pixels.
        cell_anchors: (A, 4) float64 xyxy anchors centred on (0, 0), in the convention's order (values are exactly
            the float32 cell anchors of the framework, already rounded for torchvision).
        offset_hw: centre of cell (0, 0) in pixels (center_offset * stride).
    """

    level: int
    grid_hw: tuple[int, int]
    stride_hw: tuple[int, int]
    cell_anchors: np.ndarray
    offset_hw: tuple[float, float] = (0.0, 0.0)

    @property
    def num_anchors(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1] * len(self.cell_anchors)

    def nearest_cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of the cell whose anchor centre is nearest to the point (x, y), clamped to the grid."""
        gh, gw = self.grid_hw
        sh, sw = self.stride_hw
        i = int(np.clip(np.floor((y - self.offset_hw[0]) / sh + 0.5), 0, gh - 1))
        j = int(np.clip(np.floor((x - self.offset_hw[1]) / sw + 0.5), 0, gw - 1))
        return i, j


def check_size(height: int, width: int) -> None:
    """``ValueError`` unless ``height`` and ``width`` are positive integers."""
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"image size must be positive integers, got {height}x{width}")


def resize_scale(height: int, width: int, config: AnchorConfig) -> float:
    """The resize factor: min(min_size / short side, max_size / long side), 1.0 when resize is off."""
    check_size(height, width)
    if not config.resize:
        return 1.0
    return resize_factor(height, width, config.min_size, config.max_size)


def resized_size(height: int, width: int, config: AnchorConfig) -> tuple[int, int]:
    """The network input size (before padding) for an image of ``height x width``.

    torchvision floors ``side * scale`` (``interpolate(..., recompute_scale_factor=True)``); detectron2
    (``ResizeShortestEdge``) and mmcv (``rescale_size``) round to nearest.

    Example:
        >>> resized_size(480, 640, AnchorConfig()), resized_size(480, 640, default_config("detectron2"))
        ((800, 1066), (800, 1067))
    """
    check_size(height, width)
    if not config.resize:
        return int(height), int(width)
    if config.convention == "torchvision":
        out = resized_hw(height, width, config.min_size, config.max_size)
    elif config.convention == "detectron2":
        scale = config.min_size * 1.0 / min(height, width)
        newh, neww = (config.min_size, scale * width) if height < width else (scale * height, config.min_size)
        if max(newh, neww) > config.max_size:
            s2 = config.max_size * 1.0 / max(newh, neww)
            newh, neww = newh * s2, neww * s2
        out = int(newh + 0.5), int(neww + 0.5)
    else:  # mmcv rescale_size with keep_ratio and scale (max_size, min_size): the same factor, rounded
        scale = resize_scale(height, width, config)
        out = int(height * scale + 0.5), int(width * scale + 0.5)
    if min(out) < 1:
        raise ValueError(
            f"a {width}x{height} px image resizes to {out[1]}x{out[0]} px at min size {config.min_size} / max size "
            f"{config.max_size}: too elongated for this input size (torchvision's transform fails on it too)"
        )
    return out


def padded_size(height: int, width: int, config: AnchorConfig) -> tuple[int, int]:
    """An already-resized size padded up to a multiple of ``size_divisible``.

    Example:
        >>> padded_size(800, 1333, AnchorConfig())
        (800, 1344)
    """
    check_size(height, width)
    d = config.size_divisible
    return int(math.ceil(height / d) * d), int(math.ceil(width / d) * d)


def feature_map_sizes(resized_h: int, resized_w: int, config: AnchorConfig) -> list[tuple[int, int]]:
    """Feature-map sizes (gh, gw) per level: ceil(padded / stride), i.e. n -> ceil(n / 2) per stride-2 op."""
    ph, pw = padded_size(resized_h, resized_w, config)
    return [(-(-ph // s), -(-pw // s)) for s in config.strides]


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...], convention: str) -> np.ndarray:
    """Anchors of one location centred on (0, 0), (A, 4) float64 xyxy, in the convention's order.

    The arithmetic follows each framework in float32: torchvision rounds half-to-even after halving;
    mmdet and detectron2 keep floats. torchvision and mmdet are ratio-major, detectron2 is size-major.

    Example:
        >>> cell_anchors((32,), (0.5, 1.0, 2.0), "torchvision").tolist()
        [[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "detectron2":
        rows = []
        for size in sizes:
            area = float(size) ** 2.0
            for ratio in aspect_ratios:
                w = math.sqrt(area / ratio)
                h = ratio * w
                rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return np.asarray(rows, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    scales = np.asarray(sizes, dtype=np.float32)
    ratios = np.asarray(aspect_ratios, dtype=np.float32)
    h_ratios = np.sqrt(ratios)
    w_ratios = np.float32(1.0) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2.0)
    if convention == "torchvision":
        base = np.round(base)  # numpy rounds half to even, like torch.round
    return base.astype(np.float32).astype(np.float64)


def level_grids(resized_h: int, resized_w: int, config: AnchorConfig) -> list[LevelGrid]:
    """Grid, stride and cell anchors of every level for a resized (unpadded) input size.

    Example:
        >>> [g.stride_hw for g in level_grids(800, 800, AnchorConfig())][3:]
        [(61, 61), (114, 114)]
    """
    ph, pw = padded_size(resized_h, resized_w, config)
    grids = []
    for size, stride, level, (gh, gw) in zip(
        config.sizes, config.strides, config.levels, feature_map_sizes(resized_h, resized_w, config), strict=True
    ):
        # torchvision derives the stride from the padded size; mmdet and detectron2 use the nominal one.
        tv = config.convention == "torchvision"
        stride_hw = (ph // gh, pw // gw) if tv else (int(stride), int(stride))
        offset = (config.center_offset * stride_hw[0], config.center_offset * stride_hw[1])
        grids.append(
            LevelGrid(
                level=level,
                grid_hw=(gh, gw),
                stride_hw=stride_hw,
                cell_anchors=cell_anchors(size, config.aspect_ratios, config.convention),
                offset_hw=offset,
            )
        )
    return grids


def _fill_level(out: np.ndarray, grid: LevelGrid) -> None:
    """Write one level's anchors into ``out`` ((gh * gw * A, 4) float32): cell anchor + centre shift, in float32."""
    gh, gw = grid.grid_hw
    sh, sw = grid.stride_hw
    oy, ox = grid.offset_hw
    shift_x = (np.arange(gw, dtype=np.float64) * sw + ox).astype(np.float32)
    shift_y = (np.arange(gh, dtype=np.float64) * sh + oy).astype(np.float32)
    view = out.reshape(gh, gw, len(grid.cell_anchors), 4)
    view[...] = grid.cell_anchors.astype(np.float32)
    view[..., 0::2] += shift_x[None, :, None, None]
    view[..., 1::2] += shift_y[:, None, None, None]


def generate_anchors(resized_h: int, resized_w: int, config: AnchorConfig) -> tuple[np.ndarray, np.ndarray]:
    """All anchors of an input, in the framework's order.

    Args:
        resized_h, resized_w: the network input size before padding (see :func:`resized_size`).
        config: the anchor configuration.

    Returns:
        ``(anchors, level_index)``: (N, 4) float32 xyxy and (N,) int64 level index 0..L-1. Level-major, then
        location row-major, then cell anchor: for the torchvision convention this is exactly
        ``torch.cat(AnchorGenerator(sizes, ratios)(image_list, feature_maps))``.
    """
    grids = level_grids(resized_h, resized_w, config)
    offsets = level_offsets(grids)
    anchors = np.empty((int(offsets[-1]), 4), np.float32)
    for g, start, stop in zip(grids, offsets[:-1], offsets[1:], strict=True):
        _fill_level(anchors[start:stop], g)
    levels = np.repeat(np.arange(len(grids), dtype=np.int64), np.diff(offsets))
    return anchors, levels


def level_offsets(grids: list[LevelGrid]) -> np.ndarray:
    """Index of the first anchor of each level in the flat anchor array, plus the total: (L + 1,) int64."""
    return np.concatenate([[0], np.cumsum([g.num_anchors for g in grids])]).astype(np.int64)


def anchors_at_point(x: float, y: float, grids: list[LevelGrid]) -> np.ndarray:
    """Flat indices of every anchor (all levels, all shapes) whose cell centre is nearest to (x, y).

    Args:
        x, y: a point in input (resized) pixels.
        grids: from :func:`level_grids`.

    Returns:
        (sum_l A_l,) int64 indices into the flat anchor array, level by level, in cell-anchor order.
    """
    offsets = level_offsets(grids)
    out = []
    for g, start in zip(grids, offsets[:-1], strict=False):
        i, j = g.nearest_cell(x, y)
        a = len(g.cell_anchors)
        first = start + (i * g.grid_hw[1] + j) * a
        out.append(np.arange(first, first + a, dtype=np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)
