"""Image sizes are grouped exactly: every image gets the grid of its own input size."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.anchors.grid import default_config
from explorer.dataset.scan_geometry import geometry


@pytest.mark.parametrize(
    ("heights", "widths"),
    [
        ([], []),
        ([480, 481], [640 + 2**32, 640]),  # packed as h << 32 + w, both were 481x640
        ([2**31, 480], [7, 2**31]),
        ([480, 480, 600], [640, 640, 800]),
    ],
)
def test_geometry_groups_image_sizes_exactly(heights, widths):
    cfg = default_config(resize=False)  # the input size is the image size: nothing hides a wrong grouping
    geo = geometry(np.asarray(heights, np.int64), np.asarray(widths, np.int64), cfg)
    assert geo.input_h.tolist() == heights and geo.input_w.tolist() == widths
    for i, (h, w) in enumerate(zip(heights, widths, strict=True)):
        one = geometry(np.asarray([h]), np.asarray([w]), cfg)
        np.testing.assert_array_equal(geo.level_start[i], one.level_start[0])
        mine, alone = geo.grids(np.array([i])), one.grids(np.array([0]))
        for name in ("gh", "gw", "sh", "sw", "oy", "ox", "level_start"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(alone, name))
    assert len(geo.sizes.gh) == len({(h, w) for h, w in zip(heights, widths, strict=True)})  # one row per size
