"""Hostile and garbage checkpoints: explorer.detection.checkpoints.read_state_dict refuses them with a ValueError that
says why, before reading, decompressing or converting any tensor data."""

from __future__ import annotations

import io
import math
import pickle
import zipfile

import pytest
import torch

from explorer.detection import checkpoints, loading
from explorer.detection.checkpoints import read_state_dict
from tests.helpers import zip_bytes


def _save(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def _rezip(data: bytes, *, compression: int = zipfile.ZIP_STORED, edit=None) -> bytes:
    """The same archive rewritten, optionally compressed and with ``edit(name, bytes) -> bytes`` applied to entries."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            payload = src.read(info.filename)
            dst.writestr(info.filename, edit(info.filename, payload) if edit else payload)
    return out.getvalue()


def _strided(side: int) -> bytes:
    """One float16 zero read as a (side, side) tensor through zero strides: ~1.6 kB on disk."""
    return _save({"w": torch.zeros(1, dtype=torch.float16).as_strided((side, side), (0, 0))})


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The map_location of every torch.load that read_state_dict makes ("meta" reads no tensor data)."""
    calls: list[str] = []
    real = checkpoints._torch_load

    def spy(data: bytes, map_location: str):
        calls.append(map_location)
        return real(data, map_location)

    monkeypatch.setattr(checkpoints, "_torch_load", spy)
    return calls


# ----------------------------------------------------------------------------------------------- memory blow-ups


@pytest.mark.parametrize("side", [20_000, 100_000], ids=["1.6GB", "40GB"])
def test_zero_stride_tensors_are_refused_before_conversion(side, loads):
    payload = _strided(side)
    assert len(payload) < 4096
    with pytest.raises(ValueError, match=r"'w' of shape \(\d+, \d+\) uses overlapping or non-contiguous storage"):
        read_state_dict(payload)
    assert loads == ["meta"]  # refused from the declared shapes: no storage was read, nothing converted


def test_overlapping_and_out_of_bounds_views_are_refused():
    base = torch.arange(12, dtype=torch.float32)
    with pytest.raises(ValueError, match="overlapping or non-contiguous"):
        read_state_dict(_save({"w": base.as_strided((4, 4), (2, 1))}))  # rows overlap
    with pytest.raises(ValueError, match="overlapping or non-contiguous"):
        read_state_dict(_save({"w": base.as_strided((2, 3), (6, 2))}))  # skips every other value


def test_dense_tensors_in_any_dimension_order_are_accepted():
    weight = torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    state = {"conv.weight": weight, "fc.weight": torch.randn(3, 5).t(), "count": torch.tensor(7)}
    out = read_state_dict(_save(state))
    assert all(torch.equal(out[k], v) for k, v in state.items())


def test_deflated_archive_over_the_uncompressed_limit_is_refused(monkeypatch, loads):
    monkeypatch.setenv("FOCALSCOPE_MAX_CHECKPOINT_MB", "1")
    payload = _rezip(_save({"w": torch.zeros(2_000_000)}), compression=zipfile.ZIP_DEFLATED)  # 8 MB of zeros
    assert len(payload) < 100_000
    with pytest.raises(ValueError, match=r"expands to 8 MB uncompressed, over this server's 1 MB limit"):
        read_state_dict(payload)
    assert loads == []  # refused from the zip's directory alone


def test_compression_bombs_under_the_limit_are_refused(loads):
    payload = _rezip(_save({"w": torch.zeros(2_000_000)}), compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"expands [\d,]+x once uncompressed.*zip bomb"):
        read_state_dict(payload)
    assert loads == []


def test_a_deflated_but_ordinary_checkpoint_still_loads():
    state = {"w": torch.randn(1000)}
    out = read_state_dict(_rezip(_save(state), compression=zipfile.ZIP_DEFLATED))
    assert torch.equal(out["w"], state["w"])


def test_compressed_size_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setenv("FOCALSCOPE_MAX_CHECKPOINT_MB", "1")
    with pytest.raises(ValueError, match=r"the checkpoint is 2 MB, over this server's 1 MB limit"):
        read_state_dict(_save({"w": torch.randn(500_000)}))


def test_more_values_than_any_architecture_are_refused_before_conversion(loads):
    shared = torch.zeros(1_000_000)  # 4 MB, stored once, listed under 100 names: 100 million values to convert
    payload = _save({f"w{i}": shared for i in range(100)})
    assert len(payload) < 5_000_000
    cap = checkpoints.max_checkpoint_values()
    assert 70e6 < cap < 90e6
    with pytest.raises(ValueError, match=r"holds 100\.0 million values, more than any supported architecture"):
        read_state_dict(payload)
    assert loads == ["meta"]


def test_storage_declared_larger_than_its_record_is_refused(loads):
    def truncate(name: str, payload: bytes) -> bytes:
        return payload[:16] if name.endswith("/data/0") else payload

    payload = _rezip(_save({"w": torch.zeros(1000)}), edit=truncate)
    with pytest.raises(ValueError, match=r"declares 4,000 bytes of storage but .* largest storage record holds 16"):
        read_state_dict(payload)
    assert loads == ["meta"]


def test_zip_listing_millions_of_entries_is_refused_before_listing():
    payload = zip_bytes({f"archive/{i:07d}": b"" for i in range(20_000)})
    with pytest.raises(ValueError, match=r"lists 1\.\d MB of file entries"):
        read_state_dict(payload)


# ----------------------------------------------------------------------------------------------- garbage


class _Custom:
    def __init__(self) -> None:
        self.value = 1


class _Rebuild:
    """Pickles as a call of one of torch's own tensor rebuilders, which torch.load(weights_only=True) allows."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _meta_tensor(*shape: int) -> _Rebuild:
    """A tensor pickled without data (torch rebuilds it on the meta device)."""
    strides = tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))
    return _Rebuild(torch._utils._rebuild_meta_tensor_no_storage, torch.float32, shape, strides, False)


def _converted(tensor: torch.Tensor, dtype: torch.dtype) -> _Rebuild:
    """A tensor converted while it is unpickled (torch's rebuilder for tensors saved from another device)."""
    return _Rebuild(torch._utils._rebuild_device_tensor_from_cpu_tensor, tensor, dtype, "cpu", False)


def _big_endian(name: str, payload: bytes) -> bytes:
    return b"big" if name.endswith("/byteorder") else payload


GARBAGE = [
    ("empty", b"", r"the checkpoint is empty \(0 bytes\): not a PyTorch checkpoint"),
    ("hello", b"hello", r"not a PyTorch checkpoint: its first bytes b'hello'"),
    ("gif", b"GIF89a" + bytes(200), "not a PyTorch checkpoint: its first bytes b'GIF89a"),
    ("pickle", pickle.dumps({"w": [1.0, 2.0]}), "not a PyTorch checkpoint: a plain pickle or a legacy torch.save"),
    ("legacy", _save({"w": torch.zeros(2)}, _use_new_zipfile_serialization=False), "legacy torch.save file"),
    ("truncated-zip", _save({"w": torch.zeros(100)})[:300], "not a PyTorch checkpoint: a damaged or truncated zip"),
    (
        "other-zip",
        zip_bytes({"notes/readme.txt": b"hi"}),
        "not a PyTorch checkpoint: a zip archive without the data.pkl",
    ),
    ("garbage-index", zip_bytes({"archive/data.pkl": b"\x80\x02garbage"}), "refused this checkpoint|not a PyTorch"),
    (
        "torchscript",  # torch.jit.save's layout (torch.jit itself is deprecated)
        zip_bytes({"m/data.pkl": pickle.dumps({}), "m/constants.pkl": pickle.dumps(())}),
        "not a PyTorch checkpoint: a TorchScript archive",
    ),
    ("model-object", _save(torch.nn.Linear(2, 2)), r"needs the Python object torch\.nn\.modules\.linear\.Linear"),
    ("custom-class", _save({"model": _Custom()}), r"refused this checkpoint.*state dict"),
    ("list", _save([torch.zeros(2)]), "holds a list, not a state dict"),
    ("tensor", _save(torch.zeros(3)), "holds a Tensor, not a state dict"),
    ("number", _save(3), "holds a int, not a state dict"),
    ("non-tensor-values", _save({"a": torch.zeros(1), "b": 3, "c": "x"}), "2 entries are not named tensors"),
    ("non-string-keys", _save({1: torch.zeros(1)}), "1 entries are not named tensors"),
    ("empty-dict", _save({}), "state dict is empty"),
    ("sparse", _save({"w": torch.eye(3).to_sparse()}), "torch.load can read|only dense real tensors"),
    ("complex", _save({"w": torch.zeros(2, dtype=torch.complex64)}), "dtype torch.complex64; only dense real"),
    ("float8", _save({"w": torch.zeros(2, dtype=torch.float8_e4m3fn)}), "dtype torch.float8_e4m3fn; only dense"),
    ("no-data", _save({"b": torch.zeros(8), "w": _meta_tensor(2, 3)}), "'w' has no data .*meta device"),
    ("no-data-huge", _save({"w": _meta_tensor(10**6, 10**6)}), "declares 4,000,000,000,000 bytes of storage"),
    (
        "converted-zero-strides",  # converting a zero-stride float16 view to float32 while unpickling: 1.6 GB
        _save({"w": _converted(torch.zeros(1, dtype=torch.float16).expand(20_000, 20_000), torch.float32)}),
        "declares 1,600,000,000 bytes of storage but the checkpoint's largest storage record holds 2 bytes",
    ),
    ("big-endian", _rezip(_save({"w": torch.zeros(2)}), edit=_big_endian), "only little-endian checkpoints"),
]


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
@pytest.mark.parametrize(("payload", "message"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_garbage_checkpoints_raise_a_value_error_that_says_why(payload, message):
    with pytest.raises(ValueError, match=message):
        read_state_dict(payload)
    with pytest.raises(ValueError, match=message):
        loading.load_checkpoint_model(payload, device=torch.device("cpu"))


def test_docstring_examples():
    import doctest

    assert doctest.testmod(checkpoints).failed == 0
