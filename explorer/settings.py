"""The server's limits: one place for every size cap and hosting switch, read from the environment.

FocalScope runs on a laptop (one user) or on a shared server (a team). The limits below bound what one request
may cost; an operator sets them with environment variables before ``streamlit run app.py``. ``FOCALSCOPE_HOSTED=1``
switches to the hosted defaults (smaller pixel budget, no weight downloads unless allowed explicitly).

| variable | meaning | local default | hosted default |
|---|---|---|---|
| ``FOCALSCOPE_HOSTED`` | hosted mode (``1``/``0``) | 0 | 1 |
| ``FOCALSCOPE_MAX_PIXELS`` | decoded pixels per image and request | 50,000,000 | 16,000,000 |
| ``FOCALSCOPE_MAX_CHECKPOINT_MB`` | checkpoint size, compressed and uncompressed | 600 | 600 |
| ``FOCALSCOPE_ALLOW_DOWNLOAD`` | may a visitor trigger the COCO-weights download | 1 | 0 |
| ``FOCALSCOPE_MODELS`` | models kept in memory (shared by all sessions) | 3 | 3 |
| ``FOCALSCOPE_MODEL_MEMORY_MB`` | memory budget of the kept models | 2,048 | 2,048 |
| ``FOCALSCOPE_CACHE_MB`` | memory budget of each large result cache (scans, inference) | 2,048 | 1,024 |
| ``FOCALSCOPE_DATASET_MEMORY_MB`` | memory a dataset load may need (estimated up front from the file) | 4,096 | 2,048 |

Example:
    >>> lim = limits({"FOCALSCOPE_HOSTED": "1"})
    >>> lim.hosted, lim.allow_download, lim.max_pixels
    (True, False, 16000000)
    >>> limits({"FOCALSCOPE_MAX_PIXELS": "1000"}).max_pixels
    1000
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MB = 1 << 20

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Limits:
    """What one request may cost on this server (see the module's table for the variables and defaults)."""

    hosted: bool
    max_pixels: int
    max_checkpoint_bytes: int
    allow_download: bool
    models_kept: int
    model_memory_bytes: int
    cache_bytes: int
    dataset_memory_bytes: int


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be 1 or 0, got {raw!r}")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


def limits(env: Mapping[str, str] | None = None) -> Limits:
    """The limits in force, from ``env`` (default: ``os.environ``, read at each call so tests can set it).

    Raises:
        ValueError: a variable is set to something that is not a flag or a positive integer (named).
    """
    env = os.environ if env is None else env
    hosted = _flag(env, "FOCALSCOPE_HOSTED", False)
    return Limits(
        hosted=hosted,
        max_pixels=_positive_int(env, "FOCALSCOPE_MAX_PIXELS", 16_000_000 if hosted else 50_000_000),
        max_checkpoint_bytes=_positive_int(env, "FOCALSCOPE_MAX_CHECKPOINT_MB", 600) * MB,
        allow_download=_flag(env, "FOCALSCOPE_ALLOW_DOWNLOAD", not hosted),
        models_kept=_positive_int(env, "FOCALSCOPE_MODELS", 3),
        model_memory_bytes=_positive_int(env, "FOCALSCOPE_MODEL_MEMORY_MB", 2048) * MB,
        cache_bytes=_positive_int(env, "FOCALSCOPE_CACHE_MB", 1024 if hosted else 2048) * MB,
        dataset_memory_bytes=_positive_int(env, "FOCALSCOPE_DATASET_MEMORY_MB", 2048 if hosted else 4096) * MB,
    )
