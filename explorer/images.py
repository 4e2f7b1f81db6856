"""Safe decoding of uploaded images.

Every upload goes through :func:`decode_image`: it reads the header first and refuses images over a pixel budget
*before* decoding the pixels (a decompression bomb is a small file that claims a huge size), applies the EXIF
orientation, and converts every common mode (grayscale, palette, RGBA, 16-bit, CMYK, ...) to 8-bit RGB. The
budget is the server's (:func:`explorer.settings.limits`, ``FOCALSCOPE_MAX_PIXELS``) unless the caller gives one.

Failures are ``ValueError`` in our words, not Pillow's: an image over the budget, a PNG text chunk over Pillow's
limit, a PNG whose CRC check fails, a file whose header is readable but whose data ends early. A JPEG cut short and
"repaired" with an end marker decodes without any error in libjpeg (the missing part comes out grey); it is caught
when the file is smaller than the least a complete JPEG of its header's size can take (one bit per 8x8 block of
each component in Huffman coding). A file cut less short than that cannot be told from a whole one.

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
import math
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explorer import settings

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


#: Pillow's errors for PNG text chunks (``MAX_TEXT_CHUNK``, ``MAX_TEXT_MEMORY``), raised as ValueError.
_PILLOW_TEXT_ERRORS = ("Decompressed data too large", "Too much memory used in text chunks")

#: Signatures of the formats we accept, to call a file whose header Pillow cannot read a corrupt PNG, not "unknown".
_SIGNATURES: dict[bytes, str] = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _over_limit(pixels: int, limit: int, size: str = "") -> str:
    return f"image is {size}{pixels / 1e6:.1f} MP, over the limit of {limit / 1e6:g} MP (refused before decoding)"


def _size_text(n: int) -> str:
    return f"{n:,} bytes" if n < 10_000 else f"{n / 1e3:,.0f} KB" if n < 10_000_000 else f"{n / 1e6:,.0f} MB"


@contextmanager
def _open(data: bytes, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Open image bytes lazily (header read, pixels not yet decoded); Pillow's own refusals become our ValueErrors.

    Raises:
        ValueError: if ``data`` is empty, Pillow refuses it as a decompression bomb (on open or on load; reported
            against ``max_pixels`` or Pillow's hard limit, whichever is lower), or a PNG text chunk is too large.
    """
    if not data:
        raise ValueError("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                yield im
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        hard = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow refuses above twice its warning threshold
        limit = min(max_pixels, hard) if max_pixels else hard
        if found is None:  # pragma: no cover - Pillow's wording changed
            raise ValueError(f"image is over the limit of {limit / 1e6:g} MP (refused before decoding)") from None
        raise ValueError(_over_limit(int(found.group(1)), limit)) from None
    except ValueError as err:
        if not str(err).startswith(_PILLOW_TEXT_ERRORS):
            raise
        raise ValueError(
            "a PNG text chunk is too large (metadata over Pillow's safety limit); save the image without metadata"
        ) from None


def _png_crc_problem(data: bytes) -> str | None:
    """The first PNG chunk whose CRC does not match its bytes, as a message; None when every complete one matches."""
    pos = 8
    while pos + 12 <= len(data):
        length, tag = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return None
        if zlib.crc32(data[pos + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            name = tag.decode("ascii", "replace")
            return f"the PNG is corrupt (CRC check failed in its {name!r} chunk at byte {pos:,})"
        if tag == b"IEND":
            return None
        pos = end
    return None


def _unreadable(data: bytes) -> str:
    """Why Pillow could not identify ``data``: a known format with a corrupt header, or not an image."""
    kind = next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)
    if kind == "PNG":
        crc = _png_crc_problem(data)
        if crc is not None:
            return crc
    if kind is not None:
        return f"the {kind} file is corrupt: its header cannot be read ({len(data):,} bytes)"
    return f"not a readable image ({len(data):,} bytes; format not recognised)"


#: Start-of-frame markers of Huffman-coded JPEG (baseline, extended, progressive); arithmetic coding can be smaller.
_SOF_HUFFMAN = (0xC0, 0xC1, 0xC2)


def _jpeg_min_bytes(data: bytes) -> int | None:
    """The fewest bytes a complete Huffman-coded JPEG of its frame header's size can take, else None.

    Every 8x8 block of every component is coded at least once with a Huffman code of at least one bit (the DC of a
    baseline block, or of a progressive DC scan), so a file under ``blocks / 8`` bytes cannot hold its picture.
    """
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xDA or (0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
            return None  # scan data before a frame header, or a coding we do not bound (arithmetic, lossless)
        if marker in _SOF_HUFFMAN:
            seg = data[pos + 4 : pos + 2 + length]
            if len(seg) < 6 or len(seg) < 6 + 3 * seg[5]:
                return None
            height, width, n = struct.unpack(">HHB", seg[1:6])
            hv = [(seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15) for i in range(n)]
            hmax, vmax = max((h for h, _ in hv), default=0), max((v for _, v in hv), default=0)
            if not hmax or not vmax:
                return None
            blocks = sum(
                math.ceil(math.ceil(width * h / hmax) / 8) * math.ceil(math.ceil(height * v / vmax) / 8) for h, v in hv
            )
            return blocks // 8
        pos += 2 + length
    return None


def _truncated(width: int, height: int, size: int) -> str:
    return f"the image data is truncated (header says {width}x{height}, file has {_size_text(size)})"


def image_size(data: bytes) -> tuple[int, int]:
    """Read (width, height) from the header only, without decoding the pixels.

    Raises:
        ValueError: if ``data`` is empty or not a readable image.
    """
    try:
        with _open(data) as im:
            return int(im.size[0]), int(im.size[1])
    except UnidentifiedImageError:
        raise ValueError(_unreadable(data)) from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"not a readable image ({len(data):,} bytes): {err}") from err


def decode_image(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes into an RGB array, safely.

    The size is checked from the header before the pixels are decoded. The EXIF orientation tag is applied, so
    the array is upright as a viewer shows it. The first frame of a multi-frame file (GIF, TIFF) is used.

    Args:
        data: the raw file bytes (JPEG, PNG, WebP, BMP, TIFF, GIF).
        max_pixels: refuse images with more than this many pixels (width * height); default: the server's budget,
            ``settings.limits().max_pixels`` (50 MP locally, 16 MP hosted, ``FOCALSCOPE_MAX_PIXELS`` when set).

    Returns:
        (H, W, 3) uint8 RGB array.

    Raises:
        ValueError: for empty, corrupt (PNG CRC), truncated or non-image data, an oversized PNG text chunk, or an
            image over ``max_pixels``; the message names the problem.
    """
    if max_pixels is None:
        max_pixels = settings.limits().max_pixels
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"expected image bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        with _open(data, max_pixels) as im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ValueError(f"image has an empty size {width}x{height}")
            if width * height > max_pixels:
                raise ValueError(_over_limit(width * height, max_pixels, f"{width}x{height} = "))
            fmt = im.format or "unknown"
            if fmt not in ACCEPTED_FORMATS:
                raise ValueError(f"unsupported image format {fmt}; use one of {', '.join(ACCEPTED_FORMATS)}")
            if fmt in ("JPEG", "MPO") and len(data) < (_jpeg_min_bytes(data) or 0):
                raise ValueError(_truncated(width, height, len(data)))
            im.seek(0)
            try:
                im.load()
            except OSError as err:
                if "truncated" not in str(err):
                    raise
                raise ValueError(_truncated(width, height, len(data))) from None
            return _to_rgb(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        raise ValueError(_unreadable(data)) from None
    except (OSError, SyntaxError, EOFError) as err:
        crc = _png_crc_problem(data) if data.startswith(b"\x89PNG") else None
        raise ValueError(crc or f"corrupt or truncated image: {err}") from err
