"""Tests for explorer.anchors.grid: exact parity with torchvision's AnchorGenerator and the reference counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from explorer.anchors.counts import anchor_count
from explorer.anchors.grid import (
    TORCHVISION_SIZES,
    AnchorConfig,
    anchors_at_point,
    cell_anchors,
    default_config,
    feature_map_sizes,
    generate_anchors,
    level_grids,
    level_offsets,
    octave_sizes,
    padded_size,
    resized_size,
)


def _torchvision_anchors(
    height: int, width: int, sizes=TORCHVISION_SIZES, ratios=(0.5, 1.0, 2.0), div: int = 32
) -> np.ndarray:
    """Run torchvision's transform + AnchorGenerator on a blank image of height x width (RetinaNet defaults)."""
    transform = GeneralizedRCNNTransform(800, 1333, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], size_divisible=div)
    transform.eval()
    image_list, _ = transform([torch.zeros(3, height, width)])
    ph, pw = image_list.tensors.shape[-2:]
    # Feature maps as RetinaNet's backbone makes them: n -> ceil(n / 2) per stride-2 op.
    feats = []
    h, w = ph // 8, pw // 8
    for _ in range(len(sizes)):
        feats.append(torch.zeros(1, 1, h, w))
        h, w = -(-h // 2), -(-w // 2)
    gen = AnchorGenerator(sizes, (ratios,) * len(sizes))
    return torch.cat(gen(image_list, feats)).numpy(), tuple(image_list.image_sizes[0])


@pytest.mark.parametrize(
    ("height", "width", "resized", "total"),
    [
        (800, 800, (800, 800), 120_087),
        (800, 1333, (800, 1333), 201_600),
        (1333, 800, (1333, 800), 201_600),
        (480, 640, (800, 1066), 163_206),
        (600, 600, (800, 800), 120_087),
        (512, 512, (800, 800), 120_087),
    ],
)
def test_reference_counts_and_parity(height: int, width: int, resized: tuple[int, int], total: int) -> None:
    cfg = AnchorConfig()
    assert resized_size(height, width, cfg) == resized
    anchors, levels = generate_anchors(*resized, cfg)
    assert anchors.shape == (total, 4) and anchors.dtype == np.float32
    assert levels.dtype == np.int64 and levels.shape == (total,)
    assert anchor_count(*resized, cfg) == total
    tv, tv_size = _torchvision_anchors(height, width)
    assert tv_size == resized
    np.testing.assert_array_equal(anchors, tv)


@pytest.mark.parametrize(("height", "width"), [(333, 517), (1, 1), (37, 1999), (801, 799), (427, 640), (2000, 97)])
def test_odd_sizes_parity(height: int, width: int) -> None:
    cfg = AnchorConfig()
    resized = resized_size(height, width, cfg)
    anchors, _ = generate_anchors(*resized, cfg)
    tv, tv_size = _torchvision_anchors(height, width)
    assert tv_size == resized
    np.testing.assert_array_equal(anchors, tv)


def test_grids_800x1344() -> None:
    grids = level_grids(800, 1333, AnchorConfig())
    assert [g.grid_hw for g in grids] == [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]
    assert [g.stride_hw for g in grids] == [(8, 8), (16, 16), (32, 32), (61, 64), (114, 122)]
    assert [g.level for g in grids] == [3, 4, 5, 6, 7]
    assert padded_size(800, 1333, AnchorConfig()) == (800, 1344)


def test_torchvision_cell_anchors_rounded_half_to_even() -> None:
    p3 = cell_anchors((32, 40, 50), (0.5, 1.0, 2.0), "torchvision")
    expected = [
        [-23, -11, 23, 11], [-28, -14, 28, 14], [-35, -18, 35, 18],
        [-16, -16, 16, 16], [-20, -20, 20, 20], [-25, -25, 25, 25],
        [-11, -23, 11, 23], [-14, -28, 14, 28], [-18, -35, 18, 35],
    ]  # fmt: skip
    np.testing.assert_array_equal(p3, expected)
    widths = []
    for sizes in TORCHVISION_SIZES:
        cells = cell_anchors(sizes, (1.0,), "torchvision")
        widths.append((cells[:, 2] - cells[:, 0]).astype(int).tolist())
    assert widths == [[32, 40, 50], [64, 80, 100], [128, 160, 204], [256, 322, 406], [512, 644, 812]]
    gen = AnchorGenerator(TORCHVISION_SIZES, ((0.5, 1.0, 2.0),) * 5)
    for ours, theirs in zip(level_grids(800, 800, AnchorConfig()), gen.cell_anchors, strict=True):
        np.testing.assert_array_equal(ours.cell_anchors, theirs.numpy())


def test_tiny_config_reference_7_5() -> None:
    cfg = AnchorConfig(sizes=((32,), (64,)), strides=(8, 16), resize=False)
    grids = level_grids(64, 64, cfg)
    assert [g.grid_hw for g in grids] == [(8, 8), (4, 4)]
    assert [g.stride_hw for g in grids] == [(8, 8), (16, 16)]
    anchors, levels = generate_anchors(64, 64, cfg)
    assert anchors.shape == (240, 4)
    np.testing.assert_array_equal(grids[0].cell_anchors, [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    np.testing.assert_array_equal(grids[1].cell_anchors, [[-45, -23, 45, 23], [-32, -32, 32, 32], [-23, -45, 23, 45]])
    np.testing.assert_array_equal(
        anchors[:6],
        [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23], [-15, -11, 31, 11], [-8, -16, 24, 16],
         [-3, -23, 19, 23]],
    )  # fmt: skip
    np.testing.assert_array_equal(anchors[192], [-45, -23, 45, 23])
    assert (levels[:192] == 0).all() and (levels[192:] == 1).all()
    # And torchvision itself, on the exact tensors of reference.md 7.5.
    gen = AnchorGenerator(sizes=((32,), (64,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    tv = gen(ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)]), [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    np.testing.assert_array_equal(anchors, tv[0].numpy())


def test_mmdet_and_detectron2_conventions() -> None:
    mm = default_config("mmdet")
    d2 = default_config("detectron2")
    assert mm.sizes[0] == pytest.approx((32.0, 40.3175, 50.7968), abs=1e-4)
    # Float anchors, fixed strides.
    grids = level_grids(800, 800, mm)
    assert [g.stride_hw for g in grids] == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)]
    np.testing.assert_allclose(grids[0].cell_anchors[0], [-22.6274, -11.3137, 22.6274, 11.3137], atol=1e-4)
    # mmdet is ratio-major: first three anchors share ratio 0.5; detectron2 is size-major: first three share size 32.
    mm_cells = grids[0].cell_anchors
    d2_cells = level_grids(800, 800, d2)[0].cell_anchors
    mm_ratio = (mm_cells[:, 3] - mm_cells[:, 1]) / (mm_cells[:, 2] - mm_cells[:, 0])
    d2_ratio = (d2_cells[:, 3] - d2_cells[:, 1]) / (d2_cells[:, 2] - d2_cells[:, 0])
    np.testing.assert_allclose(mm_ratio[:3], 0.5, rtol=1e-5)
    np.testing.assert_allclose(d2_ratio[:3], [0.5, 1.0, 2.0], rtol=1e-5)
    # Same set of boxes, different order: d2 index (size s, ratio r) = mm index (ratio r, size s).
    np.testing.assert_allclose(d2_cells.reshape(3, 3, 4).transpose(1, 0, 2).reshape(9, 4), mm_cells, atol=1e-4)
    anchors, _ = generate_anchors(800, 800, d2)
    assert len(anchors) == 120_087
    # P7 centres lie on a 128 grid (not 114 as in torchvision).
    p7 = anchors[-441:].reshape(7, 7, 9, 4)
    np.testing.assert_allclose((p7[0, 1, 0, 0] + p7[0, 1, 0, 2]) / 2, 128.0, atol=1e-3)


def test_resize_conventions() -> None:
    assert resized_size(480, 640, AnchorConfig()) == (800, 1066)
    assert resized_size(480, 640, default_config("detectron2")) == (800, 1067)
    assert resized_size(480, 640, default_config("mmdet")) == (800, 1067)
    assert resized_size(100, 1000, AnchorConfig()) == (133, 1333)
    assert resized_size(333, 517, AnchorConfig(resize=False)) == (333, 517)
    assert resized_size(480, 640, AnchorConfig(min_size=600, max_size=1000)) == (600, 800)


def test_feature_maps_ceil() -> None:
    assert feature_map_sizes(800, 800, AnchorConfig()) == [(100, 100), (50, 50), (25, 25), (13, 13), (7, 7)]
    assert feature_map_sizes(100, 100, AnchorConfig(size_divisible=1, resize=False)) == [
        (13, 13), (7, 7), (4, 4), (2, 2), (1, 1)
    ]  # fmt: skip


def test_center_offset() -> None:
    cfg = AnchorConfig(convention="detectron2", sizes=octave_sizes(integer=False), center_offset=0.5)
    anchors, _ = generate_anchors(64, 64, cfg)
    first = anchors[1]  # detectron2 order: size 32, ratio 1.0
    np.testing.assert_allclose([(first[0] + first[2]) / 2, (first[1] + first[3]) / 2], [4.0, 4.0], atol=1e-5)


def test_anchors_at_point_and_offsets() -> None:
    cfg = AnchorConfig()
    grids = level_grids(800, 800, cfg)
    offsets = level_offsets(grids)
    assert offsets.tolist() == [0, 90_000, 112_500, 118_125, 119_646, 120_087]
    anchors, levels = generate_anchors(800, 800, cfg)
    idx = anchors_at_point(403.0, 97.0, grids)
    assert len(idx) == 45
    assert np.bincount(levels[idx]).tolist() == [9, 9, 9, 9, 9]
    centres = (anchors[idx, :2] + anchors[idx, 2:]) / 2
    np.testing.assert_array_equal(centres[0], [400, 96])  # P3: nearest multiple of 8
    np.testing.assert_array_equal(centres[-1], [456, 114])  # P7: stride 114, nearest cell (1, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"convention": "yolo"}, "convention"),
        ({"sizes": ((32,),)}, "strides"),
        ({"sizes": ((32,), (0,), (1,), (1,), (1,))}, "positive"),
        ({"aspect_ratios": ()}, "aspect"),
        ({"strides": (8, 16, 32, 64, 0)}, "strides"),
        ({"size_divisible": 0}, "size_divisible"),
        ({"min_size": 0}, "min_size"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AnchorConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aspect_ratios": (0.5, float("inf"))}, "aspect ratios"),
        ({"aspect_ratios": (float("nan"),)}, "aspect ratios"),
        ({"aspect_ratios": (1e-300,)}, "aspect ratios"),
        ({"sizes": ((float("inf"),), (1,), (1,), (1,), (1,))}, "anchor sizes"),
        ({"sizes": ((float("nan"),), (1,), (1,), (1,), (1,))}, "anchor sizes"),
        ({"sizes": ((1e300,), (1,), (1,), (1,), (1,))}, "anchor sizes"),
        ({"strides": (8, 16, 32, 64, 10**30)}, "strides"),
        ({"min_size": 10**30}, "min_size"),
        ({"max_size": 10**8}, "max_size"),
    ],
)
def test_config_refuses_non_finite_and_absurd_values(kwargs: dict, match: str) -> None:
    """inf, nan and astronomic values used to pass (``inf > 0``) and crash the scan's grid search later."""
    with pytest.raises(ValueError, match=match):
        AnchorConfig(**kwargs)


def test_bad_image_size() -> None:
    with pytest.raises(ValueError, match="image size"):
        resized_size(0, 10, AnchorConfig())
    with pytest.raises(ValueError, match="convention"):
        default_config("caffe")


@pytest.mark.parametrize("convention", ["torchvision", "mmdet", "detectron2"])
def test_too_elongated_image_is_a_clear_value_error(convention):
    config = default_config(convention)
    with pytest.raises(ValueError, match=r"a 100000x3 px image resizes to 1333x0 px .*too elongated"):
        resized_size(3, 100000, config)


def test_docstring_examples() -> None:
    import doctest

    from explorer.anchors import grid

    assert doctest.testmod(grid).failed == 0
