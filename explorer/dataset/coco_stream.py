"""A COCO file too large to hold in memory as a whole, read as columns in blocks (Objects365 scale and beyond).

:func:`stream_columns` reads the file block by block (64 MB). A vectorised scan of each block (numpy: quotes,
backslash runs, brackets outside strings, depth) finds the top-level ``"images"`` and ``"annotations"`` arrays and
the end of every record in them; the complete records of a block are decoded with the typed msgspec records of
:mod:`explorer.dataset.coco_columns` and turned into numpy columns at once, so at most one block of records exists
as Python objects. Everything else (``info``, ``licenses``, ``categories``...) forms a *skeleton*: the file with each
streamed array replaced by its number, decoded at the end with the same typed schema. The skeleton decides which
streamed array is the file's ``images`` and which its ``annotations`` (a key written twice: the last one, as
Python's ``json``), and every byte of the file is checked by msgspec (records and the separators between blocks by
the block decodes, the rest by the skeleton's), so the columns are those of
:func:`~explorer.dataset.coco_columns.decode_columns` on the whole file, or None where it would give None.

The messages of the few rows with a problem need their original JSON values: :class:`_FileOriginals` decodes the
record's block again from the file when asked.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = path.write_bytes(b'{"images": [{"id": 1, "width": 9, "height": 9}], "annotations": [{"id": 5, '
    ...                      b'"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}], "categories": [{"id": 1}]}')
    >>> cols = stream_columns(path, block_bytes=16)
    >>> cols.image_ids.tolist(), cols.annotations.ids.tolist(), cols.categories
    ([1], [5], [{'id': 1}])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from explorer.dataset.coco_columns import (
    AnnotationColumns,
    CocoColumns,
    _Annotation,
    _Category,
    _Image,
    _python_json_would_read,
    annotation_columns,
    image_columns_of,
)
from explorer.dataset.memory import release_free_memory

#: Bytes read per block.
BLOCK_BYTES = 64 << 20
#: Largest skeleton (the file without its streamed arrays) held in memory.
MAX_SKELETON_BYTES = 256 << 20

_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("{"), ord("[")]] = 1
_OPEN[[ord("}"), ord("]")]] = -1
_KEY_BEFORE = re.compile(rb'"(images|annotations)"\s*:\s*$')
_IMAGES = msgspec.json.Decoder(list[_Image])
_ANNOTATIONS = msgspec.json.Decoder(list[_Annotation])
_WHITESPACE = b" \t\r\n"


class _Skeleton(msgspec.Struct):
    images: list[_Image] | int
    annotations: list[_Annotation] | int | msgspec.UnsetType = msgspec.UNSET
    categories: list[_Category] | msgspec.UnsetType = msgspec.UNSET


@dataclass
class _Stream:
    """One streamed top-level array: its key, its decoded column chunks, and its blocks (row start, file range)."""

    key: str
    chunks: list[Any] = field(default_factory=list)
    blocks: list[tuple[int, int, int]] = field(default_factory=list)
    rows: int = 0
    first: bool = True


class _NotTyped(Exception):
    """The file does not fit the typed schema: the caller reads it another way."""


class _Scanner:
    """The structure of a JSON byte stream, block by block: depth and string state carried across blocks."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.backslashes = 0  # backslashes at the end of the previous block

    def structure(self, buf: np.ndarray, raw: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the brackets outside strings in ``buf`` (uint8; ``raw``: the same bytes, when at hand, to
        skip the backslash pass of a block without any) and the depth after each."""
        quotes = np.flatnonzero(buf == 34)
        slashes = np.flatnonzero(buf == 92) if raw is None or b"\\" in raw else np.zeros(0, np.int64)
        if len(quotes) and (len(slashes) or self.backslashes):
            quotes = quotes[~self._escaped(quotes, slashes)]
        candidates = np.flatnonzero((buf & 0xD9) == 0x59)  # [ ] { } and a few others (Y _ y DEL)
        brackets = candidates[_OPEN[buf[candidates]] != 0]
        before = np.searchsorted(quotes, brackets) + int(self.in_string)
        brackets = brackets[before % 2 == 0]
        depth = self.depth + np.cumsum(_OPEN[buf[brackets]], dtype=np.int64)
        self.in_string = bool((len(quotes) + int(self.in_string)) % 2)
        self.depth = int(depth[-1]) if len(depth) else self.depth
        self.backslashes = _trailing_run(slashes, len(buf), self.backslashes)
        return brackets, depth

    def _escaped(self, quotes: np.ndarray, slashes: np.ndarray) -> np.ndarray:
        """Quotes preceded by an odd run of backslashes (a run at the block start continues the last block's)."""
        if len(slashes) == 0:
            return (quotes == 0) & (self.backslashes % 2 == 1)
        breaks = np.flatnonzero(np.diff(slashes) != 1)
        starts = np.concatenate([[slashes[0]], slashes[breaks + 1]])
        ends = np.concatenate([slashes[breaks], [slashes[-1]]])
        length = ends - starts + 1 + np.where(starts == 0, self.backslashes, 0)
        k = np.minimum(np.searchsorted(ends, quotes - 1), len(ends) - 1)
        run = np.where(ends[k] == quotes - 1, length[k], np.where(quotes == 0, self.backslashes, 0))
        return run % 2 == 1


def _trailing_run(slashes: np.ndarray, n: int, carried: int) -> int:
    """Backslashes at the end of a block of ``n`` bytes (continuing ``carried`` when the block is all of them)."""
    run = 0
    k = len(slashes) - 1
    while k >= 0 and slashes[k] == n - 1 - run:
        run += 1
        k -= 1
    return run + carried if run == n else run


def _separator(text: bytearray, *, first: bool, last: bool) -> int | None:
    """Where the records of ``[`` + a piece of an array start in ``text`` (after the whitespace and, for a piece
    after the first, the one comma that separates it from the previous piece); None when it holds no record."""
    n = len(text)
    k = 1
    while k < n and text[k] in _WHITESPACE:
        k += 1
    if not first:
        if k == n and last:
            return None
        if k == n or text[k] != ord(","):
            raise _NotTyped
        k += 1
        while k < n and text[k] in _WHITESPACE:
            k += 1
        if k == n:
            raise _NotTyped  # a trailing comma before the array's end
    return None if k == n else k


def stream_columns(path: str | os.PathLike, *, block_bytes: int = BLOCK_BYTES) -> CocoColumns | None:
    """The columns of the COCO file at ``path``, read in blocks of ``block_bytes``; None when the file does not fit
    the typed schema (the same files as :func:`~explorer.dataset.coco_columns.decode_columns`)."""
    try:
        return _Reader(Path(path), block_bytes).read()
    except (_NotTyped, msgspec.DecodeError, RecursionError, OverflowError):
        return None


class _Reader:
    def __init__(self, path: Path, block_bytes: int) -> None:
        self.path = path
        self.block_bytes = max(16, block_bytes)
        self.scanner = _Scanner()
        self.streams: list[_Stream] = []
        self.skeleton = bytearray()
        self.pending = b""  # bytes of the current streamed array not decoded yet
        self.pending_at = 0  # file offset of pending[0]
        self.current: _Stream | None = None
        self._key = ""

    def read(self) -> CocoColumns:
        offset = 0
        with open(self.path, "rb") as f:
            while block := f.read(self.block_bytes):
                self._block(block, offset)
                offset += len(block)
        if self.current is not None:
            raise _NotTyped  # the file ends inside a streamed array
        skeleton = bytes(self.skeleton)
        if not _python_json_would_read(skeleton):
            raise _NotTyped
        return self._columns(msgspec.json.decode(skeleton, type=_Skeleton))

    def _block(self, block: bytes, offset: int) -> None:
        """Scan one block: start and end streamed arrays, decode the complete records of the current one."""
        brackets, depth = self.scanner.structure(np.frombuffer(block, np.uint8), block)
        chars = np.frombuffer(block, np.uint8)[brackets]
        opening = _OPEN[chars] > 0
        top = np.flatnonzero(np.where(opening, depth == 2, depth == 1))  # values of the top-level object
        record_ends = brackets[(depth == 2) & (chars == ord("}"))]
        pos = 0  # bytes of block handled
        for t in top.tolist():
            b = int(brackets[t])
            if self.current is None:
                if block[b] == ord("[") and self._key_before(block[pos:b]):
                    self.skeleton += block[pos:b]
                    self.skeleton += str(len(self.streams)).encode()
                    self.current = _Stream(self._key)
                    self.streams.append(self.current)
                    self.pending, self.pending_at, pos = b"", offset + b + 1, b + 1
            elif not opening[t]:  # the end of the streamed array
                self._decode(memoryview(block)[pos:b], last=True)
                self.current, pos = None, b + 1
        if self.current is None:
            self.skeleton += block[pos:]
            if len(self.skeleton) > MAX_SKELETON_BYTES:
                raise _NotTyped
            return
        ends = record_ends[record_ends >= pos]
        if len(ends) and len(self.pending) + int(ends[-1]) + 1 - pos >= self.block_bytes // 2:
            cut = int(ends[-1]) + 1
            self._decode(memoryview(block)[pos:cut], last=False)
            self.pending, self.pending_at, pos = b"", offset + cut, cut
        self.pending += block[pos:]

    def _key_before(self, text: bytes) -> bool:
        """Whether the top-level key before a ``[`` (ending ``text``, or the skeleton before it) is one we stream."""
        match = _KEY_BEFORE.search((bytes(self.skeleton[-256:]) + text[-256:])[-256:])
        self._key = match.group(1).decode() if match else ""
        return match is not None

    def _decode(self, more: memoryview, *, last: bool) -> None:
        """Decode the records in ``pending + more``, a piece of the current array: records with their separators;
        a piece after the first starts with the separator after the previous piece's last record."""
        stream = self.current
        text = bytearray(b"[")
        text += self.pending
        text += more
        head = _separator(text, first=stream.first, last=last)
        if head is None:
            return
        start = self.pending_at + head - 1
        del text[1:head]
        text += b"]"
        if not _python_json_would_read(text):
            raise _NotTyped
        decoder = _IMAGES if stream.key == "images" else _ANNOTATIONS
        records = decoder.decode(text)
        stream.blocks.append((stream.rows, start, len(text) - 2))
        stream.rows += len(records)
        stream.first = False
        if stream.key == "images":
            stream.chunks.append(image_columns_of(records))
        else:
            columns = annotation_columns(records)
            columns.original = None  # not the records: they would all stay alive; _FileOriginals decodes again
            stream.chunks.append(columns)
        del records
        release_free_memory()  # the block's records, freed: else glibc keeps their pages (1.6 GB at Objects365 scale)

    def _columns(self, skeleton: _Skeleton) -> CocoColumns:
        images = self._array(skeleton.images, "images")
        anns = skeleton.annotations
        cats = None
        if skeleton.categories is not msgspec.UNSET:
            cats = [
                {"id": c.id} if c.name is msgspec.UNSET else {"id": c.id, "name": c.name} for c in skeleton.categories
            ]
        ann_cols = None
        if anns is not msgspec.UNSET:
            ann_cols = self._array(anns, "annotations")
        return CocoColumns(*images, categories=cats, annotations=ann_cols)

    def _array(self, value: list | int, key: str) -> Any:
        """The columns of a skeleton value: decoded in place (a list), or streamed array number ``value``."""
        if isinstance(value, list):
            return image_columns_of(value) if key == "images" else annotation_columns(value)
        if not 0 <= value < len(self.streams) or self.streams[value].key != key:
            raise _NotTyped  # a number written in the file, not one of ours
        stream = self.streams[value]
        if key == "images":
            return _concat_images(stream.chunks)
        return _concat_annotations(stream, self.path)


def _concat_images(chunks: list[tuple]) -> tuple:
    if not chunks:
        return image_columns_of([])
    ids, widths, heights = (np.concatenate([c[k] for c in chunks]) for k in range(3))
    names = [name for c in chunks for name in c[3]]
    return ids, widths, heights, names


def _concat_annotations(stream: _Stream, path: Path) -> AnnotationColumns:
    chunks = stream.chunks
    if not chunks:
        return annotation_columns([])
    columns = {}
    for key in ("ids", "image_ids", "category_ids", "xywh", "iscrowd", "iscrowd_missing", "areas"):
        columns[key] = np.concatenate([getattr(c, key) for c in chunks])
        for c in chunks:
            setattr(c, key, None)  # free each chunk's column as soon as it is copied
        release_free_memory()
    chunks.clear()
    return AnnotationColumns(**columns, original=_FileOriginals(path, stream.blocks))


class _FileOriginals:
    """The original values of annotation rows, decoded again from their block of the file when asked."""

    def __init__(self, path: Path, blocks: list[tuple[int, int, int]]) -> None:
        self._path = path
        self._row_starts = np.asarray([b[0] for b in blocks], np.int64)
        self._blocks = blocks
        self._cached: tuple[int, list] = (-1, [])

    def _record(self, k: int) -> _Annotation:
        block = int(np.searchsorted(self._row_starts, k, side="right")) - 1
        if self._cached[0] != block:
            _, start, size = self._blocks[block]
            with open(self._path, "rb") as f:
                f.seek(start)
                self._cached = (block, _ANNOTATIONS.decode(b"[" + f.read(size) + b"]"))
        return self._cached[1][k - self._blocks[block][0]]

    def bbox(self, k: int) -> list:
        return list(self._record(k).bbox)

    def iscrowd(self, k: int) -> Any:
        return self._record(k).iscrowd
