"""How many anchors an input gets, and why the often-quoted numbers differ.

Every framework pads the input to a multiple of 32 and maps a side n to ceil(n / 2) per stride-2 convolution
(:mod:`explorer.anchors.grid`); the floor convention, grid = floor(side / stride), that tutorials quote gives fewer.

Example:
    >>> cfg = AnchorConfig()
    >>> anchor_count(800, 800, cfg), floor_convention_count(800, 800, cfg)
    (120087, 119745)
"""

from __future__ import annotations

from explorer.anchors.grid import AnchorConfig, check_size, level_grids, padded_size


def counts_per_level(resized_h: int, resized_w: int, config: AnchorConfig) -> list[int]:
    """Number of anchors per level: gh * gw * A."""
    return [g.num_anchors for g in level_grids(resized_h, resized_w, config)]


def anchor_count(resized_h: int, resized_w: int, config: AnchorConfig) -> int:
    """Total number of anchors for a resized input size."""
    return int(sum(counts_per_level(resized_h, resized_w, config)))


def floor_convention_count(resized_h: int, resized_w: int, config: AnchorConfig) -> int:
    """The count that ``grid = floor(side / stride)`` on the unpadded input gives (119,745 at 800x800).

    No framework uses it: their stride-2 convolutions give ceil(n / 2), hence 13 and 7 cells on P6/P7 for 800 px.
    """
    check_size(resized_h, resized_w)
    return int(
        sum(
            (resized_h // s) * (resized_w // s) * a
            for s, a in zip(config.strides, config.anchors_per_location(), strict=True)
        )
    )


def count_conventions(resized_h: int, resized_w: int, config: AnchorConfig) -> dict[str, int]:
    """Anchor counts under the grid conventions people quote, for a resized input size.

    Returns:
        ``{"padded, ceil (all frameworks)": ..., "floor(side / stride)": ..., "floor on the padded size": ...,
        "ceil without padding": ...}``.

    Example:
        >>> count_conventions(800, 1333, AnchorConfig())
        {'padded, ceil (all frameworks)': 201600, 'floor(side / stride)': 198675, 'floor on the padded size': 201258, 'ceil without padding': 200700}
    """  # noqa: E501
    ph, pw = padded_size(resized_h, resized_w, config)
    per_loc = config.anchors_per_location()
    ceil_unpadded = sum(
        (-(-resized_h // s)) * (-(-resized_w // s)) * a for s, a in zip(config.strides, per_loc, strict=True)
    )
    return {
        "padded, ceil (all frameworks)": anchor_count(resized_h, resized_w, config),
        "floor(side / stride)": floor_convention_count(resized_h, resized_w, config),
        "floor on the padded size": floor_convention_count(ph, pw, config),
        "ceil without padding": int(ceil_unpadded),
    }


def explain_anchor_count(resized_h: int, resized_w: int, config: AnchorConfig) -> str:
    """A short Markdown explanation of the default count against the floor-convention count.

    Example:
        >>> print(explain_anchor_count(800, 800, AnchorConfig()).split(": ")[0])
        **120,087 anchors** for an input of 800x800 (height x width; padded to 800x800)
    """
    grids = level_grids(resized_h, resized_w, config)
    ph, pw = padded_size(resized_h, resized_w, config)
    total = anchor_count(resized_h, resized_w, config)
    floor_total = floor_convention_count(resized_h, resized_w, config)
    floor_grids = ", ".join(f"{resized_h // s}x{resized_w // s}" for s in config.strides)
    lines = [
        f"**{total:,} anchors** for an input of {resized_h}x{resized_w} (height x width; padded to {ph}x{pw}): grids "
        + ", ".join(f"{g.grid_hw[0]}x{g.grid_hw[1]}" for g in grids)
        + ".",
        "",
        f"The often-quoted floor convention, grid = floor(side / stride), gives {floor_grids} and "
        f"**{floor_total:,} anchors**. No framework produces that: the image is padded to a multiple of "
        f"{config.size_divisible}, and every stride-2 convolution maps n to ceil(n / 2), so P6 and P7 keep a "
        "partial cell at the border (800 px -> 13 and 7 cells, not 12 and 6).",
    ]
    if config.convention == "torchvision":
        strides = ", ".join(f"P{g.level}: {g.stride_hw[0]}x{g.stride_hw[1]}" for g in grids)
        lines += ["", f"torchvision recomputes each stride as padded size // grid size (h x w): {strides}."]
    return "\n".join(lines)
