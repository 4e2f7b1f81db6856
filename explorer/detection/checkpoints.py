"""Reading a user's checkpoint safely: :func:`read_state_dict` refuses hostile or garbage bytes before any
tensor data is decompressed, read or converted.

The checks, in order: the size limit (``FOCALSCOPE_MAX_CHECKPOINT_MB``); the zip archive torch.save writes (its
central directory, uncompressed size and compression ratio, the ``data.pkl`` index, the byte order, TorchScript
archives refused); then a ``torch.load(weights_only=True, map_location="meta")`` load that reads the pickled index
only, so every tensor's type, dtype, declared storage, strides and the total value count
(:func:`max_checkpoint_values`) are checked; only then the real load, unwrapped and converted to float32.

Recognising the architecture and building the model from the state dict is ``explorer.detection.loading``.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import struct
import zipfile
import zlib
from functools import lru_cache

import torch

from explorer import settings
from explorer.detection.architectures import ARCHITECTURES, CLS_BIAS, CLS_WEIGHT, architecture_shapes

#: Most classes a checkpoint's head may predict (LVIS has 1,204 with the background): with the largest
#: architecture it bounds how many values a checkpoint may hold (:func:`max_checkpoint_values`).
MAX_CHECKPOINT_CLASSES = 2048
#: Largest ``data.pkl`` in a checkpoint (the pickled names, shapes and storage keys; a RetinaNet's is ~50 kB).
_MAX_INDEX_BYTES = 8 << 20
#: Largest zip central directory (~80 bytes per stored tensor; a RetinaNet has ~400): bounds what listing costs.
_MAX_DIRECTORY_BYTES = 1 << 20
#: Uncompressed / compressed size above which a checkpoint is refused as a zip bomb (torch.save never compresses).
_MAX_COMPRESSION_RATIO = 10
#: Tensor types and dtypes read from a checkpoint (a state dict's; float8, sub-byte and complex types are not).
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_DTYPES = frozenset(
    {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16, torch.int32}
    | {torch.int64, torch.bool}
)


def _zip_directory_bytes(data: bytes) -> int | None:
    """Size of a zip's central directory, read from its end record (zip64 too); None when there is no end record.

    Read before ``zipfile`` lists the archive: listing costs memory per entry, and a small upload can hold millions.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 0xFFFF))
    if end < 0 or len(data) - end < 22:
        return None
    (size,) = struct.unpack_from("<I", data, end + 12)
    if size != 0xFFFFFFFF:
        return size
    locator = end - 20  # zip64: the end record's locator sits just before it and points to the zip64 end record
    if locator < 0 or data[locator : locator + 4] != b"PK\x06\x07":
        return None
    (record,) = struct.unpack_from("<Q", data, locator + 8)
    if record + 56 > len(data) or data[record : record + 4] != b"PK\x06\x06":
        return None
    return struct.unpack_from("<Q", data, record + 40)[0]


def _check_archive(data: bytes, max_bytes: int) -> dict[str, int]:
    """Check that ``data`` is a torch.save zip that stays within ``max_bytes`` once uncompressed.

    Only the zip's directory and its few-byte ``byteorder`` entry are read: nothing large is decompressed.

    Returns:
        storage key (``"0"``, ``"1"``, ...) -> its record's uncompressed size in bytes.

    Raises:
        ValueError: not a zip (a legacy pickle included), a damaged zip, a zip that torch.save did not write, a
            TorchScript archive, sizes over the limits (uncompressed total, compression ratio, index, directory), or
            a big-endian checkpoint.
    """
    if not data.startswith(b"PK\x03\x04"):
        kind = (
            "a plain pickle or a legacy torch.save file (PyTorch < 1.6), which are not read"
            if data[:1] == b"\x80"
            else f"its first bytes {data[:8]!r} are neither a torch.save zip nor a pickle"
        )
        raise ValueError(f"not a PyTorch checkpoint: {kind}. Save it with torch.save(model.state_dict(), path).")
    directory = _zip_directory_bytes(data)
    if directory is None:
        raise ValueError("not a PyTorch checkpoint: a damaged or truncated zip archive (no end-of-archive record)")
    if directory > _MAX_DIRECTORY_BYTES:
        raise ValueError(
            f"not a PyTorch checkpoint: the zip lists {directory / 2**20:.1f} MB of file entries, far more than a "
            f"state dict's (at most {_MAX_DIRECTORY_BYTES / 2**20:.0f} MB)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = {info.filename: info for info in archive.infolist()}
            top = next(iter(names), "").split("/", 1)[0]
            order = names.get(f"{top}/byteorder")
            if order is None:
                byteorder = b"little"  # how torch reads a file without the entry
            elif order.file_size <= len(b"little"):
                byteorder = archive.read(order)
            else:
                byteorder = f"({order.file_size:,} bytes)".encode()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as err:
        raise ValueError(f"not a PyTorch checkpoint: a damaged or truncated zip archive ({err})") from err
    except (NotImplementedError, zlib.error) as err:  # an unknown compression method, a corrupt stream
        raise ValueError(f"not a PyTorch checkpoint: a zip entry cannot be decompressed ({err})") from err
    index = names.get(f"{top}/data.pkl")
    if index is None:
        raise ValueError("not a PyTorch checkpoint: a zip archive without the data.pkl that torch.save writes")
    if f"{top}/constants.pkl" in names:
        raise ValueError(
            "not a PyTorch checkpoint: a TorchScript archive (torch.jit.save); save the state dict instead: "
            "torch.save(model.state_dict(), path)"
        )
    total = sum(info.file_size for info in names.values())
    if total > max_bytes:
        raise ValueError(
            f"the checkpoint expands to {total / 2**20:,.0f} MB uncompressed, over this server's "
            f"{max_bytes / 2**20:,.0f} MB limit (FOCALSCOPE_MAX_CHECKPOINT_MB)"
        )
    if total > _MAX_COMPRESSION_RATIO * len(data):
        raise ValueError(
            f"the checkpoint expands {total / len(data):,.0f}x once uncompressed ({len(data):,} -> {total:,} bytes); "
            "torch.save does not compress, so it is refused as a zip bomb"
        )
    if index.file_size > _MAX_INDEX_BYTES:
        raise ValueError(
            f"not a PyTorch checkpoint: its data.pkl is {index.file_size / 2**20:.0f} MB, far more than a state "
            f"dict's (at most {_MAX_INDEX_BYTES / 2**20:.0f} MB)"
        )
    if byteorder != b"little":  # torch would byteswap every storage, and that crashes on the checks' data-less ones
        raise ValueError(f"the checkpoint's byte order is {byteorder!r}: only little-endian checkpoints are read")
    prefix = f"{top}/data/"
    return {name[len(prefix) :]: info.file_size for name, info in names.items() if name.startswith(prefix)}


def _torch_load(data: bytes, map_location: str) -> object:
    """``torch.load(weights_only=True)`` of checkpoint bytes; every failure becomes a ValueError that says why.

    With ``map_location="meta"`` no storage is read: tensors come back with their declared sizes and strides only.
    """
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = f"it needs the Python object {needed.group(1)}" if needed else "it holds unsupported pickle data"
        raise ValueError(
            f"torch.load(weights_only=True) refused this checkpoint: {detail}, and only tensors and plain "
            "containers are loaded from uploads. Save only the state dict: torch.save(model.state_dict(), path)."
        ) from err
    except Exception as err:  # hostile bytes reach torch's zip and pickle readers: any failure is "unreadable"
        raise ValueError(
            f"not a PyTorch checkpoint that torch.load can read ({type(err).__name__}: {str(err)[:200]})"
        ) from err


def _as_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping inside a loaded checkpoint: unwrapped from ``{"model": ...}`` / ``{"state_dict":
    ...}`` / ``{"model_state_dict": ...}``, with DataParallel's ``module.`` prefix stripped.

    Raises:
        ValueError: not a dict, an empty one, or entries that are not named tensors.
    """
    for wrapper in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"the checkpoint holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if not obj:
        raise ValueError("the checkpoint's state dict is empty")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(repr(k)[:80] for k in bad[:5])
        raise ValueError(f"the checkpoint is not a state dict: {len(bad)} entries are not named tensors ({shown})")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def _dense(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """Whether strides lay a tensor out densely without overlap (contiguous in some dimension order).

    Example:
        >>> _dense((2, 3), (3, 1)), _dense((2, 3), (1, 2)), _dense((4, 4), (0, 0)), _dense((2, 3), (4, 1))
        (True, True, False, False)
    """
    if math.prod(shape) == 0:
        return True
    expected = 1
    for size, stride in sorted((p for p in zip(shape, strides, strict=True) if p[0] != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


@lru_cache(maxsize=1)
def max_checkpoint_values() -> int:
    """Most values (tensor elements, all entries together) a checkpoint may hold.

    The largest of :data:`ARCHITECTURES` with a head of :data:`MAX_CHECKPOINT_CLASSES` classes (a state dict's
    ``num_batches_tracked`` counters aside): about 79 million, 316 MB once in float32.
    """

    def values(arch: str) -> int:
        shapes = architecture_shapes(arch)  # 2 classes
        per_class = (math.prod(shapes[CLS_WEIGHT]) + math.prod(shapes[CLS_BIAS])) // 2
        return sum(math.prod(s) for s in shapes.values()) + (MAX_CHECKPOINT_CLASSES - 2) * per_class

    return max(values(arch) for arch in ARCHITECTURES)


def _check_tensors(state: dict[str, torch.Tensor], record_bytes: dict[str, int]) -> None:
    """Refuse tensors that would cost more memory than the archive holds, before any is read or converted.

    Args:
        state: the state dict as loaded with ``map_location="meta"`` (declared shapes, strides and storage sizes).
        record_bytes: storage records' sizes (:func:`_check_archive`).

    Raises:
        ValueError: a tensor subclass, a sparse, nested or quantized tensor, a dtype a state dict does not hold
            (complex, float8, sub-byte); a storage declared larger than any record; a tensor whose strides overlap or
            skip (``as_strided`` tricks: 2 bytes of storage read as 1.6 GB); more values in total than
            :func:`max_checkpoint_values`.
    """
    largest_record = max(record_bytes.values(), default=0)
    total = 0
    for name, t in state.items():
        if type(t) not in _TENSOR_TYPES or t.layout != torch.strided or t.is_nested or t.dtype not in _DTYPES:
            kind = f"{type(t).__name__} of layout {t.layout} and dtype {t.dtype}"
            raise ValueError(f"tensor {name!r} is a {kind}; only dense real tensors (float, integer, bool) are read")
        storage_bytes = t.untyped_storage().nbytes()
        if storage_bytes > largest_record:
            raise ValueError(
                f"tensor {name!r} declares {storage_bytes:,} bytes of storage but the checkpoint's largest storage "
                f"record holds {largest_record:,} bytes: a damaged or forged checkpoint"
            )
        shape, strides = tuple(t.shape), tuple(t.stride())
        if not _dense(shape, strides) or (t.storage_offset() + t.numel()) * t.element_size() > storage_bytes:
            raise ValueError(
                f"tensor {name!r} of shape {shape} uses overlapping or non-contiguous storage (strides {strides}, "
                f"{t.numel():,} values read from {storage_bytes:,} bytes); only tensors saved from a model's "
                "state_dict() are read"
            )
        total += t.numel()
    cap = max_checkpoint_values()
    if total > cap:
        raise ValueError(
            f"the checkpoint holds {total / 1e6:,.1f} million values, more than any supported architecture "
            f"({cap / 1e6:,.1f} million with {MAX_CHECKPOINT_CLASSES} classes)"
        )


def read_state_dict(data: bytes, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from checkpoint bytes with ``torch.load(weights_only=True)``, refusing hostile files first.

    Accepts a bare state dict or one wrapped as ``{"model": ...}`` / ``{"state_dict": ...}`` (torchvision's
    reference scripts, Lightning), strips a ``module.`` prefix (DataParallel) and converts floats to float32.

    Nothing is decompressed, read or converted before the checks pass: the zip's uncompressed size and compression
    ratio (from its directory), then every tensor's declared storage size, strides and the total value count (from
    a ``map_location="meta"`` load, which reads the pickled index only).

    Args:
        data: the ``.pt``/``.pth`` bytes (the zip format torch.save writes).
        max_bytes: limit on the compressed and the uncompressed size; default ``settings.limits()``
            (``FOCALSCOPE_MAX_CHECKPOINT_MB``).

    Raises:
        ValueError: empty or oversized data, bytes that are not a torch.save zip ("not a PyTorch checkpoint: ..."),
            a pickle that ``weights_only`` refuses, content that is not a mapping of names to tensors, or tensors
            that would cost more memory than their bytes (see :func:`_check_tensors`).
    """
    limit = settings.limits().max_checkpoint_bytes if max_bytes is None else max_bytes
    if not data:
        raise ValueError("the checkpoint is empty (0 bytes): not a PyTorch checkpoint")
    if len(data) > limit:
        raise ValueError(
            f"the checkpoint is {len(data) / 2**20:,.0f} MB, over this server's {limit / 2**20:,.0f} MB limit "
            "(FOCALSCOPE_MAX_CHECKPOINT_MB)"
        )
    record_bytes = _check_archive(data, limit)
    _check_tensors(_as_state_dict(_torch_load(data, "meta")), record_bytes)
    state = _as_state_dict(_torch_load(data, "cpu"))
    for name, t in state.items():  # a tensor pickled without data (torch's meta rebuild) stays on the meta device
        if t.device.type != "cpu":
            raise ValueError(f"tensor {name!r} has no data (it was saved on the {t.device.type} device)")
    return {name: t.float() if t.is_floating_point() else t for name, t in state.items()}
