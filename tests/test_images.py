"""Tests for explorer.images: every odd or bad image is built inside the test."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from explorer.images import decode_image, image_size


def _save(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _gradient_rgb(w: int = 12, h: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 20 % 256, yy * 30 % 256, (xx + yy) * 7 % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_rgb_roundtrip(fmt: str) -> None:
    arr = _gradient_rgb()
    out = decode_image(_save(Image.fromarray(arr), fmt))
    assert out.dtype == np.uint8 and out.shape == (8, 12, 3)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_rgb_close(fmt: str) -> None:
    arr = np.full((16, 24, 3), (200, 60, 30), np.uint8)
    out = decode_image(_save(Image.fromarray(arr), fmt, quality=95))
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - arr).max() <= 6


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    out = decode_image(_save(Image.fromarray(gray, mode="L"), "PNG"))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_one_bit_image() -> None:
    im = Image.new("1", (5, 3), 1)
    im.putpixel((0, 0), 0)
    out = decode_image(_save(im, "PNG"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [255, 255, 255]


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[0, 0, 3] = 255  # opaque red
    rgba[0, 1, 3] = 0  # fully transparent -> white
    rgba[0, 2, 3] = 128  # half -> pink
    out = decode_image(_save(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2, 0] == 255 and 120 <= out[0, 2, 1] <= 135


def test_grayscale_alpha() -> None:
    im = Image.new("LA", (3, 3), (0, 0))  # black, fully transparent
    out = decode_image(_save(im, "PNG"))
    assert (out == 255).all()


def test_palette_with_transparency() -> None:
    im = Image.new("P", (4, 4), 0)
    im.putpalette([10, 20, 30] + [200, 100, 50] + [0, 0, 0] * 254)
    im.putpixel((1, 1), 1)
    im.info["transparency"] = 0
    out = decode_image(_save(im, "PNG", transparency=0))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [200, 100, 50]


def test_palette_opaque() -> None:
    im = Image.new("P", (2, 2), 1)
    im.putpalette([0, 0, 0] + [12, 34, 56] + [0, 0, 0] * 254)
    out = decode_image(_save(im, "GIF"))
    assert out[0, 0].tolist() == [12, 34, 56]


def test_16bit_grayscale_png_scaled() -> None:
    arr16 = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    data = cv2.imencode(".png", arr16)[1].tobytes()
    out = decode_image(data)
    assert out.shape == (2, 2, 3)
    assert out[:, :, 0].tolist() == [[0, 100], [255, 7]]


def test_16bit_rgb_png_scaled() -> None:
    bgr16 = np.zeros((3, 3, 3), np.uint16)
    bgr16[..., 2] = 65535  # red in BGR order
    bgr16[..., 1] = 257 * 40
    data = cv2.imencode(".png", bgr16)[1].tobytes()
    out = decode_image(data)
    assert out[0, 0].tolist() == [255, 40, 0]


def test_16bit_tiff() -> None:
    arr16 = np.array([[1000, 60000]], dtype=np.uint16)
    data = _save(Image.fromarray(arr16), "TIFF")
    out = decode_image(data)
    assert out[0, :, 0].tolist() == [round(1000 / 257), round(60000 / 257)]


def test_float_tiff() -> None:
    arr = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    out = decode_image(_save(Image.fromarray(arr, mode="F"), "TIFF"))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg() -> None:
    im = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_image(_save(im, "JPEG", quality=95))
    r, g, b = out[4, 4].tolist()
    assert r > 230 and g < 25 and b < 25


def test_exif_orientation_applied() -> None:
    arr = np.zeros((10, 20, 3), np.uint8)  # 20 wide, 10 tall
    arr[:, :5] = (255, 0, 0)  # red strip on the left
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(_save(im, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (20, 10, 3)
    # After a 90 degree clockwise turn, the left strip is at the top.
    assert out[1, 5, 0] > 200 and out[-2, 5, 0] < 50


def test_multiframe_uses_first_frame() -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue())
    assert out[0, 0].tolist() == [255, 0, 0]


def test_empty_bytes() -> None:
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"")


def test_not_an_image() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"%PDF-1.4 this is not an image at all" * 10)


def test_truncated_png() -> None:
    data = _save(Image.fromarray(_gradient_rgb(64, 64)), "PNG")
    with pytest.raises(ValueError, match=r"the image data is truncated \(header says 64x64, file has 77 bytes\)"):
        decode_image(data[: len(data) // 2])


def test_corrupt_jpeg_body() -> None:
    data = bytearray(_save(Image.fromarray(_gradient_rgb(64, 64)), "JPEG"))
    cut = data[:200]  # header survives, scan data cut
    with pytest.raises(ValueError):
        decode_image(bytes(cut))


def _chunk(tag: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(tag + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size, with a tiny IDAT: a decompression-bomb shaped file."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00")) + _chunk(b"IEND", b"")


def _png(*, before: bytes = b"", after: bytes = b"", ihdr_crc: int | None = None) -> bytes:
    """A valid 4x3 grey PNG with extra chunks before or after its IDAT."""
    ihdr = struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0)
    idat = _chunk(b"IDAT", zlib.compress(b"\x00\x80\x80\x80\x80" * 3))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, ihdr_crc) + before + idat + after + _chunk(b"IEND", b"")


def test_over_50mp_refused_before_decoding() -> None:
    data = _png_header_only(10_000, 5_001)  # 50.01 MP; the pixel data would be corrupt if decoded
    assert image_size(data) == (10_000, 5_001)
    with pytest.raises(ValueError, match=r"50\.0 MP, over the limit of 50 MP"):
        decode_image(data)


def test_huge_bomb_refused() -> None:
    data = _png_header_only(60_000, 60_000)  # 3.6 GP: beyond Pillow's own bomb guard too
    with pytest.raises(ValueError, match=r"MP|decompression bomb"):
        decode_image(data)


def test_custom_pixel_limit() -> None:
    data = _save(Image.new("RGB", (100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ValueError, match="over the limit"):
        decode_image(data, max_pixels=9_999)
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(data, max_pixels=0)


def test_unsupported_format_named() -> None:
    data = _save(Image.new("RGB", (4, 4)), "PPM")
    with pytest.raises(ValueError, match="unsupported image format PPM"):
        decode_image(data)


def test_image_size_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        image_size(b"")
    with pytest.raises(ValueError, match="not a readable image"):
        image_size(b"hello")


def test_default_pixel_budget_is_the_servers(monkeypatch) -> None:
    data = _save(Image.new("RGB", (100, 100)), "PNG")
    monkeypatch.setenv("FOCALSCOPE_MAX_PIXELS", "9999")
    with pytest.raises(ValueError, match=r"100x100 = 0\.0 MP, over the limit of 0\.009999 MP"):
        decode_image(data)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)  # an explicit budget wins
    monkeypatch.delenv("FOCALSCOPE_MAX_PIXELS")
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")
    with pytest.raises(ValueError, match=r"4001x4000 = 16\.0 MP, over the limit of 16 MP"):
        decode_image(_png_header_only(4001, 4000))


@pytest.mark.parametrize(("width", "height", "mp"), [(18_000, 10_000, "180.0"), (60_000, 60_000, "3600.0")])
def test_images_over_pillows_bomb_limit_are_reported_in_our_words(width: int, height: int, mp: str) -> None:
    with pytest.raises(ValueError) as info:
        decode_image(_png_header_only(width, height), max_pixels=50_000_000)
    assert str(info.value) == f"image is {mp} MP, over the limit of 50 MP (refused before decoding)"


_BIG_TEXT = zlib.compress(b"a" * 2_000_000)  # 2 MB of metadata: over Pillow's MAX_TEXT_CHUNK (1 MB)


@pytest.mark.parametrize(
    "png",
    [
        _png(before=_chunk(b"zTXt", b"comment\x00\x00" + _BIG_TEXT)),
        _png(after=_chunk(b"zTXt", b"comment\x00\x00" + _BIG_TEXT)),
        _png(before=_chunk(b"iTXt", b"comment\x00\x01\x00\x00\x00" + _BIG_TEXT)),
    ],
    ids=["zTXt-before-IDAT", "zTXt-after-IDAT", "iTXt"],
)
def test_png_text_chunk_overflow_is_named(png: bytes) -> None:
    assert decode_image(_png()).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="a PNG text chunk is too large"):
        decode_image(png)


def test_png_with_a_broken_crc_is_called_corrupt_not_unknown() -> None:
    with pytest.raises(ValueError, match=r"the PNG is corrupt \(CRC check failed in its 'IHDR' chunk at byte 8\)"):
        decode_image(_png(ihdr_crc=1234))
    with pytest.raises(ValueError, match="CRC check failed"):
        image_size(_png(ihdr_crc=1234))


def _noise_jpeg(width: int, height: int, **kwargs) -> bytes:
    rng = np.random.default_rng(0)
    return _save(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)), "JPEG", **kwargs)


@pytest.mark.parametrize("tail", [b"\xff\xd9", b""], ids=["end-marker-appended", "cut"])
def test_jpeg_much_shorter_than_its_header_claims_is_truncated(tail: bytes) -> None:
    """A JPEG cut short and closed with an end marker used to decode without error, the missing part grey."""
    data = _noise_jpeg(1000, 1000, quality=95, subsampling=0)  # 4:4:4: 46,875 blocks, at least 5,860 bytes
    with pytest.raises(
        ValueError, match=r"the image data is truncated \(header says 1000x1000, file has 5,002 bytes\)"
    ):
        decode_image(data[:5000] + tail if tail else data[:5002])
    flat = _save(Image.new("L", (4000, 3000), 128), "JPEG", progressive=True, optimize=True)
    assert len(flat) < 50_000  # 12 MP in 47 KB, about 2 bits per 8x8 block: near the bound, but whole
    assert decode_image(flat, max_pixels=12_000_000).shape == (3000, 4000, 3)
