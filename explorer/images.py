"""Safe decoding of uploaded images.

Every upload goes through :func:`decode_image`: it reads the header first and refuses images over a pixel budget
*before* decoding the pixels (a decompression bomb is a small file that claims a huge size), applies the EXIF
orientation, and converts every common mode (grayscale, palette, RGBA, 16-bit, CMYK, ...) to 8-bit RGB.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("L", (4, 2), 128).save(buf, format="PNG")
    >>> img = decode_image(buf.getvalue())
    >>> img.shape, img.dtype, img[0, 0].tolist()
    ((2, 4, 3), dtype('uint8'), [128, 128, 128])
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Default pixel budget: 50 megapixels.
MAX_PIXELS = 50_000_000

#: File formats the app accepts from uploads (Pillow format names).
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")

#: File extensions offered in upload widgets.
UPLOAD_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")


def _to_uint8_gray(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel integer or float array to uint8. (H, W) -> (H, W) uint8."""
    if mode.startswith("I;16") or arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    if mode == "F":
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return a.round().clip(0, 255).astype(np.uint8)
    # Mode "I" (32-bit signed): 16-bit PNGs and TIFFs often land here with values up to 65535.
    a = arr.astype(np.int64)
    if a.size and a.max() > 255:
        return (a.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    return a.clip(0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any Pillow image to (H, W, 3) uint8 RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_uint8_gray(np.asarray(im), mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy()
    # 1, L, P, CMYK, YCbCr, LAB, HSV: Pillow's converters (CMYK -> RGB is the usual naive inversion).
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


@contextmanager
def _open(data: bytes) -> Iterator[Image.Image]:
    """Open image bytes lazily (header read, pixels not yet decoded), with Pillow's bomb guard as a ValueError.

    Raises:
        ValueError: if ``data`` is empty, or Pillow refuses it as a decompression bomb (on open or on load).
    """
    if not data:
        raise ValueError("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                yield im
    except Image.DecompressionBombError as err:
        raise ValueError(f"image refused as a possible decompression bomb: {err}") from err


def image_size(data: bytes) -> tuple[int, int]:
    """Read (width, height) from the header only, without decoding the pixels.

    Raises:
        ValueError: if ``data`` is empty or not a readable image.
    """
    try:
        with _open(data) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"not a readable image ({len(data):,} bytes): {err}") from err


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into an RGB array, safely.

    The size is checked from the header before the pixels are decoded. The EXIF orientation tag is applied, so
    the array is upright as a viewer shows it. The first frame of a multi-frame file (GIF, TIFF) is used.

    Args:
        data: the raw file bytes (JPEG, PNG, WebP, BMP, TIFF, GIF).
        max_pixels: refuse images with more than this many pixels (width * height); default 50 MP.

    Returns:
        (H, W, 3) uint8 RGB array.

    Raises:
        ValueError: for empty, corrupt, truncated or non-image data, or an image over ``max_pixels``;
            the message names the problem.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expected image bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        with _open(data) as im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ValueError(f"image has an empty size {width}x{height}")
            if width * height > max_pixels:
                raise ValueError(
                    f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of "
                    f"{max_pixels / 1e6:g} MP (refused before decoding)"
                )
            fmt = im.format or "unknown"
            if fmt not in ACCEPTED_FORMATS:
                raise ValueError(f"unsupported image format {fmt}; use one of {', '.join(ACCEPTED_FORMATS)}")
            im.seek(0)
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except UnidentifiedImageError as err:
        raise ValueError(f"not a readable image ({len(data):,} bytes; format not recognised)") from err
    except (OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"corrupt or truncated image: {err}") from err
