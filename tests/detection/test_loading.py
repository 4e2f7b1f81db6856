"""Tests of explorer.detection.loading: COCO weights from the torch hub cache and the operator's download switch,
users' checkpoints that fit or do not (hostile and garbage ones: test_checkpoints.py), class names from a COCO
categories list."""

from __future__ import annotations

import io
import urllib.error

import numpy as np
import pytest
import torch

from explorer.detection import architectures, loading
from explorer.detection.architectures import DEMO, V1, V2
from explorer.detection.checkpoints import read_state_dict
from explorer.detection.inference import run_inference
from explorer.detection.loading import WeightsUnavailableError, load_checkpoint_model, parse_categories

CPU = torch.device("cpu")


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _hub_file(tmp_path, monkeypatch, arch: str):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("FOCALSCOPE_HOSTED", "FOCALSCOPE_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    path = loading.coco_weights_path(arch)
    assert str(path).startswith(str(tmp_path)) and path.parent.name == "checkpoints"
    return path


def test_coco_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V1)
    assert path.name == "retinanet_resnet50_fpn_coco-eeacb38b.pth"
    torch.manual_seed(3)
    built = architectures.build_model(V1, 91)
    state = {k: v.half() if v.is_floating_point() else v for k, v in built.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as the real file
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")  # a hosted server without downloads still reads the cached file
    loaded = loading.load_coco_model(V1, allow_download=False, device=CPU)
    assert loaded.source == "coco" and loaded.num_classes == 91
    assert loaded.class_names[1] == "person" and 0 not in loaded.class_names
    key = "head.classification_head.cls_logits.weight"
    assert torch.equal(loaded.model.state_dict()[key], state[key].float())


def test_coco_weights_missing_offline_gives_a_clear_message(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V2)
    with pytest.raises(WeightsUnavailableError, match="not in the torch hub cache") as err:
        loading.load_coco_model(V2, allow_download=False)
    assert str(path) in str(err.value)

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError, match=r"could not be downloaded.*offline"):
        loading.load_coco_model(V2, allow_download=True)


def test_hosted_server_never_downloads_unless_the_operator_allows_it(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V1)
    attempts = []

    def offline(url, dst, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")
    with pytest.raises(WeightsUnavailableError, match="set FOCALSCOPE_ALLOW_DOWNLOAD=1") as err:
        loading.load_coco_model(V1, allow_download=True)
    assert str(path) in str(err.value) and "copy the file to that path" in str(err.value)
    assert attempts == []
    monkeypatch.setenv("FOCALSCOPE_ALLOW_DOWNLOAD", "1")
    with pytest.raises(WeightsUnavailableError, match="could not be downloaded"):
        loading.load_coco_model(V1, allow_download=True)
    assert len(attempts) == 1


def test_corrupt_cached_weights_are_reported(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        loading.load_coco_model(V1, allow_download=False)


def test_checkpoint_round_trip_detects_the_architecture(demo, demo_state_bytes, small_image):
    loaded = load_checkpoint_model(demo_state_bytes, device=CPU)
    assert loaded.arch == DEMO and loaded.source == "checkpoint"
    assert loaded.class_names == demo.class_names
    a = run_inference(loaded, small_image).detections
    b = run_inference(demo, small_image).detections
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)


def test_wrapped_and_dataparallel_checkpoints_are_unwrapped(demo_state_bytes):
    state = read_state_dict(demo_state_bytes)
    wrapped = _save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3})
    loaded = load_checkpoint_model(wrapped, device=CPU, categories={1: "a", 8: "h"})
    assert loaded.class_names == {1: "a", 8: "h"}


def test_wrong_architecture_names_the_keys():
    from torchvision.models import resnet18

    payload = _save(resnet18(weights=None).state_dict())
    with pytest.raises(ValueError, match=r"does not match any supported architecture.*missing keys \(") as err:
        load_checkpoint_model(payload, device=CPU)
    assert "unexpected keys" in str(err.value) and "fc.bias" in str(err.value)


def test_missing_unexpected_and_misshaped_keys_are_named(demo_state_bytes):
    state = read_state_dict(demo_state_bytes)
    missing = dict(state)
    del missing["head.regression_head.bbox_reg.weight"]
    with pytest.raises(ValueError, match=r"missing keys? \(.*head\.regression_head\.bbox_reg\.weight"):
        load_checkpoint_model(_save(missing), device=CPU)
    extra = {**state, "head.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys?.*head\.extra\.weight"):
        load_checkpoint_model(_save(extra), arch=DEMO, device=CPU)
    shaped = {**state, "backbone.fpn.layer_blocks.0.0.weight": torch.zeros(3, 3, 3, 3)}
    with pytest.raises(ValueError, match=r"other shapes.*backbone\.fpn\.layer_blocks\.0\.0\.weight"):
        load_checkpoint_model(_save(shaped), arch=DEMO, device=CPU)
    with pytest.raises(ValueError, match=f"does not fit {V1}: [0-9]+ missing keys"):
        load_checkpoint_model(demo_state_bytes, arch=V1, device=CPU)


def test_wrong_class_count_names_the_category(demo_state_bytes):
    with pytest.raises(ValueError, match=r"wrong class count.*9 classes.*'zebra' has id 12"):
        load_checkpoint_model(demo_state_bytes, categories={1: "circle", 12: "zebra"}, device=CPU)


def test_other_class_counts_build_the_matching_head(demo_state_bytes):
    state = read_state_dict(demo_state_bytes)
    a = 9
    for key in ("head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias"):
        state[key] = state[key][: a * 4]
    loaded = load_checkpoint_model(_save(state), device=CPU)
    assert loaded.num_classes == 4 and loaded.class_names == {i: f"class {i}" for i in range(4)}


def test_parse_categories():
    assert parse_categories(b'{"categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]}') == {
        1: "cat",
        3: "dog",
    }
    assert parse_categories([{"id": 0, "name": "bg"}]) == {0: "bg"}
    for bad, message in [
        (b"{", "not valid JSON"),
        (b'{"images": []}', "no 'categories'"),
        (b"[]", "non-empty list"),
        (b'[{"id": "1", "name": "x"}]', "'id' must be an integer"),
        (b'[{"id": 1, "name": 5}]', "'name' must be a string"),
        (b'[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]', "appears twice"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"categories": ' * 100_000 + b"[]" + b"}" * 100_000, "nested too deeply"),
        (b'[{"id": ' + b"9" * 5000 + b', "name": "x"}]', "not valid JSON"),  # over Python's int-string limit
        (b'[{"id": 1180591620717411303424, "name": "x"}]', "'id' must be an integer from 0 to 2,147,483,647"),
        (b'[{"id": 1e30, "name": "x"}]', "'id' must be an integer"),
        (b'[{"id": -1, "name": "x"}]', "'id' must be an integer"),
        (b'[{"id": NaN, "name": "x"}]', "'id' must be an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_categories(bad)
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_categories("[" * 100_000 + "]" * 100_000)
