"""Reading a COCO file's bytes into Python objects, leanly and safely (the first step of
:func:`explorer.dataset.coco.load_coco`).

:func:`read_bytes` takes bytes or a path under a size cap, and decompresses gzip (``.json.gz``, or any bytes
that start with gzip's magic number) under the same cap on the decompressed size, so a small file that inflates to
gigabytes (a decompression bomb) is refused after reading at most the cap. :func:`parse_json_lean` parses them
with every polygon ``segmentation`` cut out of the raw bytes first (about 300 of the 448 MB of
``instances_train2017.json``), so their Python objects are never built. Anything that is not JSON, or JSON that
Python cannot read (nested hundreds of levels deep, a number of more than 4,300 digits), raises
:class:`CocoFormatError`, a ``ValueError``, with the line and column of a syntax error; a zip, image or PDF
uploaded by mistake is named.

Example:
    >>> parse_json_lean(b'{"annotations": [{"segmentation": [[1, 2, 3, 4]], "bbox": [1, 2, 3, 4]}]}')
    {'annotations': [{'segmentation': [], 'bbox': [1, 2, 3, 4]}]}
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Any

from explorer.dataset.memory import megabytes

#: Default cap on the size of an annotation file (bytes).
DEFAULT_MAX_BYTES = 2_000_000_000

# A polygon segmentation value: a list of lists of plain numbers. Only that shape is cut out; anything else (RLE
# dicts, odd formatting) stays and is parsed normally, so a miss costs speed, never correctness.
_POLYGON_SEGMENTATION = re.compile(rb'"segmentation"\s*:\s*\[\s*\[[^\[\]{}"]*\](?:\s*,\s*\[[^\[\]{}"]*\])*\s*\]')


class CocoFormatError(ValueError):
    """The input is not a COCO dict at all (not JSON, not an object, no ``images`` list).

    Attributes:
        line, column: 1-based position of a JSON syntax error, else ``None``.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


#: Leading bytes of files that people upload by mistake instead of a COCO JSON.
_MAGIC: dict[bytes, str] = {
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "a gzip file (decompress it first)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"PAR1": "a Parquet file",
}


def read_bytes(source: bytes | bytearray | memoryview | str | os.PathLike, max_bytes: int) -> tuple[bytes, str]:
    """The bytes of an annotation file (a path, or bytes already read) and its display name, gunzipped when they
    are gzip; the cap applies to the file and to its decompressed content.

    Raises:
        CocoFormatError: a folder, a missing file, over ``max_bytes``, or a gzip file that is corrupt or
            decompresses to more than ``max_bytes``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "uploaded JSON"
    else:
        path = Path(source)
        if path.is_dir():
            raise CocoFormatError(f"{path} is a folder, not an annotation file")
        if not path.is_file():
            raise CocoFormatError(f"annotation file not found: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise CocoFormatError(
                f"annotation file {path.name} is {megabytes(size)}, over the {megabytes(max_bytes)} limit"
            )
        data = path.read_bytes()
        name = path.name
    if len(data) > max_bytes:
        raise CocoFormatError(f"annotation data is {megabytes(len(data))}, over the {megabytes(max_bytes)} limit")
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, max_bytes, name)
    return data, name


def gunzip(data: bytes, max_bytes: int, name: str) -> bytes:
    """The decompressed content of gzip ``data``, read up to ``max_bytes + 1`` bytes and refused beyond ``max_bytes``
    (memory stays bounded by the cap, whatever the ratio).

    Example:
        >>> gunzip(gzip.compress(b"{}"), 10, "a.json.gz")
        b'{}'
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise CocoFormatError(f"{name} is a gzip file that cannot be decompressed: {err}") from None
    if len(out) > max_bytes:
        raise CocoFormatError(
            f"{name} decompresses to more than the {megabytes(max_bytes)} limit (a gzip file of "
            f"{megabytes(len(data))}); "
            "refused as a possible decompression bomb"
        )
    return out


def _json_error(err: json.JSONDecodeError) -> CocoFormatError:
    return CocoFormatError(
        f"invalid JSON at line {err.lineno}, column {err.colno} (character {err.pos}): {err.msg}",
        line=err.lineno,
        column=err.colno,
    )


def parse_json_lean(data: bytes) -> Any:
    """Parse COCO JSON bytes, replacing every polygon ``segmentation`` by an empty list before parsing.

    Args:
        data: the file's bytes (UTF-8, UTF-16 or UTF-32, as ``json.loads`` accepts).

    Returns:
        The parsed object; polygon segmentations are ``[]``, RLE segmentations are kept.

    Raises:
        CocoFormatError: not valid JSON (the message gives the line and column in the original bytes), nested
            too deeply for Python's parser, or holding an integer of more than 4,300 digits.
    """
    head = data[:4096].lstrip(b" \t\r\n\xef\xbb\xbf")
    if not head:
        raise CocoFormatError("the annotation file is empty")
    utf8 = not (data[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(data) > 1 and data[1] == 0) or data[0] == 0)
    if utf8 and head[:1] not in (b"{", b"["):
        kind = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), None)
        if kind is not None:
            raise CocoFormatError(f"not a COCO JSON file: this is {kind}")
        text = head[:20].decode("utf-8", "replace")
        snippet = "".join(c if c.isprintable() else "?" for c in text)
        raise CocoFormatError(f"not a COCO JSON file: it starts with {snippet!r}, not with '{{'")
    lean = _POLYGON_SEGMENTATION.sub(b'"segmentation":[]', data) if utf8 else data
    try:
        return _loads(lean)
    except UnicodeDecodeError as err:
        raise CocoFormatError(f"not a UTF-8 JSON file: {err.reason} at byte {err.start}") from None
    except json.JSONDecodeError as err:
        if lean is data:
            raise _json_error(err) from None
    del lean
    # Report the position in the original text: parse it again (only on failure).
    try:
        return _loads(data)
    except json.JSONDecodeError as err:
        raise _json_error(err) from None


def _loads(text: bytes) -> Any:
    """``json.loads``, with the failures that are not syntax errors turned into :class:`CocoFormatError`.

    Python's parser recurses once per nesting level, so ``[[[[...]]]]`` thousands deep raises ``RecursionError``
    (the parse is abandoned as a whole; nothing of it is kept); an integer of more than 4,300 digits raises
    Python's own ``ValueError`` about ``sys.set_int_max_str_digits``.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise CocoFormatError(
            "the JSON is nested too deeply to read (hundreds of levels of [ or {; a COCO file needs 5)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as err:
        if "integer string conversion" not in str(err):
            raise
        raise CocoFormatError(f"a number in the JSON has more than {sys.get_int_max_str_digits():,} digits") from None
