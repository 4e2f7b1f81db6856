"""Image sizes from file headers, without decoding pixels, many files at once (the YOLO and VOC readers).

``PIL.Image.open`` reads the header only; the pixels are decoded on first access, which never comes here. The
size follows Ultralytics' ``exif_size`` (``ultralytics/data/utils.py``): a JPEG whose EXIF orientation is 6 or 8
(rotated 90° or 270°) reports width and height swapped, as the image is shown and as Ultralytics trains on it;
orientations 5 and 7 (transposed), which Ultralytics leaves unrotated, are left too, as is every other format.
Files are read by a thread pool (the work is file I/O and header parsing, which release the GIL in part).

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     Image.new("RGB", (64, 48)).save(f"{tmp}/a.png")
    ...     image_sizes([Path(tmp) / "a.png", Path(tmp) / "missing.jpg"])
    [(64, 48), 'cannot read the image: No such file or directory']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from explorer.dataset.coco_problems import MAX_IMAGE_SIDE

#: Image file suffixes of Ultralytics' ``IMG_FORMATS`` that Pillow reads (lower case, without the dot).
IMAGE_SUFFIXES: frozenset[str] = frozenset({"bmp", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"})

#: EXIF tag of the orientation, and the orientations that Ultralytics' ``exif_size`` reads as rotated by 90°.
_ORIENTATION = 274
_ROTATED = frozenset({6, 8})


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the name ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return str(path).rpartition(".")[-1].lower() in IMAGE_SUFFIXES


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, EXIF rotation applied as Ultralytics' ``exif_size``.

    Raises:
        OSError: the file cannot be opened or is not an image Pillow knows.
        ValueError: a side over :data:`~explorer.dataset.coco_problems.MAX_IMAGE_SIDE`.
    """
    with Image.open(path) as img:
        width, height = img.size
        if img.format == "JPEG":
            try:
                orientation = img.getexif().get(_ORIENTATION)
            except Exception:  # a broken EXIF block: Ultralytics ignores it too
                orientation = None
            if orientation in _ROTATED:
                width, height = height, width
    if max(width, height) > MAX_IMAGE_SIDE or min(width, height) < 1:
        raise ValueError(f"the image is {width}x{height} px, outside 1..{MAX_IMAGE_SIDE:,} px a side")
    return int(width), int(height)


def _size_or_reason(path: Path) -> tuple[int, int] | str:
    try:
        return image_size(path)
    except UnidentifiedImageError:
        return "not an image that can be read"
    except OSError as err:
        return f"cannot read the image: {err.strerror or err}"
    except Image.DecompressionBombError as err:
        return f"refused: {err}"
    except ValueError as err:
        return str(err)


def image_sizes(paths: Sequence[Path], workers: int | None = None) -> list[tuple[int, int] | str]:
    """:func:`image_size` of every path, in order, read by ``workers`` threads (default: up to 8); an image that
    cannot be read gives the reason as a string instead of a size."""
    if not paths:
        return []
    n = workers if workers is not None else min(8, (os.cpu_count() or 1) * 2)
    if n <= 1 or len(paths) < 16:
        return [_size_or_reason(p) for p in paths]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(_size_or_reason, paths, chunksize=64))
