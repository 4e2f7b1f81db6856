"""Anchor configurations as text: one parser for the CLI and the pages, exact round trips, clear refusals, and the
fitted anchors of a fit-anchors report."""

from __future__ import annotations

import json

import pytest

from explorer.anchors.config_text import (
    MAX_LEVELS,
    anchors_from_report,
    custom_config,
    format_ratios,
    format_sizes,
    parse_ratios,
    parse_sizes,
)
from explorer.anchors.grid import TORCHVISION_SIZES, default_config, octave_sizes


@pytest.mark.parametrize(
    "sizes", [TORCHVISION_SIZES, octave_sizes(integer=False), ((16.0335, 24.0967), (1.5,), (3, 4.25))]
)
def test_sizes_and_ratios_read_back_exactly(sizes):
    assert parse_sizes(format_sizes(sizes)) == tuple(tuple(s) for s in sizes)
    ratios = (1 / 3, 0.7071, 1.0, 2.0)
    assert parse_ratios(format_ratios(ratios)) == ratios


def test_integral_sizes_stay_integers_as_torchvision_s():
    sizes = parse_sizes("32, 40.0, 50 ;64,80,101;")
    assert sizes == ((32, 40, 50), (64, 80, 101)) and all(type(v) is int for v in sizes[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected sizes per level"),
        ("32,x", "anchor sizes of level 1: expected comma-separated numbers"),
        ("32; 64,nan", "level 2: expected finite numbers"),
        (";".join(["32"] * (MAX_LEVELS + 1)), f"at most {MAX_LEVELS} levels"),
        ("1,2,3,4,5,6,7,8,9", "at most 8 per level"),
    ],
)
def test_bad_sizes_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sizes(text)


@pytest.mark.parametrize(("text", "message"), [(" , ", "at least one number"), ("0.5,inf", "finite"), ("a", "comma")])
def test_bad_ratios_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=f"aspect ratios: .*{message}"):
        parse_ratios(text)


def test_custom_config_gives_strides_by_level_and_keeps_the_input_rules():
    base = default_config(min_size=480, max_size=800)
    cfg = custom_config(((16, 20), (32, 40), (64, 80)), (1.0,), base)
    assert cfg.strides == (8, 16, 32) and cfg.min_size == 480 and cfg.anchors_per_location() == [2, 2, 2]
    with pytest.raises(ValueError, match="anchor sizes must be positive"):
        custom_config(((0, 20),), (1.0,))


def test_a_report_gives_its_torchvision_section():
    report = {"torchvision": {"sizes": [[16.5, 24.0], [33.0, 48.0]], "aspect_ratios": [[0.5, 1.0]] * 2}}
    assert anchors_from_report(json.dumps(report)) == (((16.5, 24), (33, 48)), (0.5, 1.0))
    for bad in (b"{", b"[]", b'{"torchvision": {"sizes": 3}}', b'{"mmdet": {}}'):
        with pytest.raises(ValueError, match="not a fit-anchors report"):
            anchors_from_report(bad)
    mixed = {"torchvision": {"sizes": [[16], [32]], "aspect_ratios": [[0.5], [1.0]]}}
    with pytest.raises(ValueError, match="differ between levels"):
        anchors_from_report(mixed)
