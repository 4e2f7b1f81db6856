"""explorer.settings: the server's limits from the environment."""

from __future__ import annotations

import pytest

from explorer.settings import MB, limits


def test_local_defaults():
    lim = limits({})
    assert (lim.hosted, lim.max_pixels, lim.allow_download) == (False, 50_000_000, True)
    assert (lim.models_kept, lim.model_memory_bytes, lim.max_checkpoint_bytes) == (3, 2048 * MB, 600 * MB)


def test_hosted_defaults_refuse_downloads_and_lower_the_pixel_budget():
    lim = limits({"FOCALSCOPE_HOSTED": "1"})
    assert (lim.hosted, lim.max_pixels, lim.allow_download, lim.cache_bytes) == (True, 16_000_000, False, 1024 * MB)
    assert limits({"FOCALSCOPE_HOSTED": "yes", "FOCALSCOPE_ALLOW_DOWNLOAD": "1"}).allow_download


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"FOCALSCOPE_MAX_PIXELS": "lots"}, "FOCALSCOPE_MAX_PIXELS must be a positive integer"),
        ({"FOCALSCOPE_MODELS": "0"}, "FOCALSCOPE_MODELS must be a positive integer"),
        ({"FOCALSCOPE_HOSTED": "maybe"}, "FOCALSCOPE_HOSTED must be 1 or 0"),
    ],
)
def test_bad_values_are_named(env, match):
    with pytest.raises(ValueError, match=match):
        limits(env)
