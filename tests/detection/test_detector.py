"""Tests of explorer.detection.detector (+ groundtruth, fast_detect, detection_view): building and loading models,
checkpoints
that do not fit (hostile and garbage ones: test_checkpoints.py), the hub cache and the operator's download switch,
dense outputs against torchvision's own postprocess and losses, the lock, the OOM fallback."""

from __future__ import annotations

import copy
import dataclasses
import io
import threading
import urllib.error

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from explorer.dataset.coco import load_coco
from explorer.detection import detector
from explorer.detection.demo_model import DEMO_NUM_CLASSES
from explorer.detection.detector import (
    DEMO,
    V1,
    V2,
    Detections,
    WeightsUnavailableError,
    filter_detections,
    load_checkpoint_model,
    parse_categories,
    read_state_dict,
    run_inference,
)
from explorer.detection.fast import FastRetinaNet, fold_batchnorm, match_detections_strict
from explorer.detection.groundtruth import loss_breakdown, match_detections
from explorer.detection.view import category_mismatch, draw_detections, gt_for_image, sample_scene
from explorer.labels import POSITIVE

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def demo() -> detector.LoadedModel:
    return detector.load_demo_model(CPU)


@pytest.fixture(scope="module")
def scene():
    return sample_scene(0)


@pytest.fixture(scope="module")
def small_image(scene) -> np.ndarray:
    """A 120x160 crop: the demo model resizes it to 480x640, the size it was trained at."""
    return np.ascontiguousarray(scene.image[::4, ::4])


@pytest.fixture(scope="module")
def result(demo, scene):
    return run_inference(demo, scene.image)


@pytest.fixture(scope="module")
def demo_state_bytes() -> bytes:
    return detector.DEMO_WEIGHTS.read_bytes()


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- building


def test_device_selection_and_names():
    assert detector.select_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert detector.select_device(None).type == expected
    assert detector.device_name(CPU).startswith("CPU")
    with pytest.raises(ValueError, match="'auto', 'cuda' or 'cpu'"):
        detector.select_device("tpu")


def test_build_model_never_downloads_and_rejects_unknown_arch():
    model = detector.build_model(DEMO, 5)
    assert model.head.classification_head.num_classes == 5
    with pytest.raises(ValueError, match="unknown architecture 'yolo'"):
        detector.build_model("yolo", 3)


@pytest.mark.parametrize("arch", [DEMO, V1, V2])
def test_architecture_shapes_distinguish_the_three_models(arch):
    shapes = detector._architecture_shapes(arch)
    others = [detector._architecture_shapes(a) for a in detector.ARCHITECTURES if a != arch]
    assert all(shapes != o for o in others)
    assert "head.classification_head.cls_logits.weight" in shapes


def test_demo_model_loads_with_shape_names(demo):
    assert demo.arch == DEMO and demo.source == "demo"
    assert demo.num_classes == DEMO_NUM_CLASSES
    assert demo.class_names[1] == "circle" and demo.label_name(99) == "class 99"
    assert not demo.model.training
    assert detector.DEMO_WEIGHTS.stat().st_size < 16 * 2**20
    meta = detector.demo_metadata()
    assert meta["heldout_metrics"]["AP50"] >= 0.8


# ----------------------------------------------------------------------------------------------- hub cache


def _hub_file(tmp_path, monkeypatch, arch: str):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("FOCALSCOPE_HOSTED", "FOCALSCOPE_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    path = detector.coco_weights_path(arch)
    assert str(path).startswith(str(tmp_path)) and path.parent.name == "checkpoints"
    return path


def test_coco_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V1)
    assert path.name == "retinanet_resnet50_fpn_coco-eeacb38b.pth"
    torch.manual_seed(3)
    built = detector.build_model(V1, 91)
    state = {k: v.half() if v.is_floating_point() else v for k, v in built.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as the real file
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")  # a hosted server without downloads still reads the cached file
    loaded = detector.load_coco_model(V1, allow_download=False, device=CPU)
    assert loaded.source == "coco" and loaded.num_classes == 91
    assert loaded.class_names[1] == "person" and 0 not in loaded.class_names
    key = "head.classification_head.cls_logits.weight"
    assert torch.equal(loaded.model.state_dict()[key], state[key].float())


def test_coco_weights_missing_offline_gives_a_clear_message(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V2)
    with pytest.raises(WeightsUnavailableError, match="not in the torch hub cache") as err:
        detector.load_coco_model(V2, allow_download=False)
    assert str(path) in str(err.value)

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError, match=r"could not be downloaded.*offline"):
        detector.load_coco_model(V2, allow_download=True)


def test_hosted_server_never_downloads_unless_the_operator_allows_it(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V1)
    attempts = []

    def offline(url, dst, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("FOCALSCOPE_HOSTED", "1")
    with pytest.raises(WeightsUnavailableError, match="set FOCALSCOPE_ALLOW_DOWNLOAD=1") as err:
        detector.load_coco_model(V1, allow_download=True)
    assert str(path) in str(err.value) and "copy the file to that path" in str(err.value)
    assert attempts == []
    monkeypatch.setenv("FOCALSCOPE_ALLOW_DOWNLOAD", "1")
    with pytest.raises(WeightsUnavailableError, match="could not be downloaded"):
        detector.load_coco_model(V1, allow_download=True)
    assert len(attempts) == 1


def test_corrupt_cached_weights_are_reported(tmp_path, monkeypatch):
    path = _hub_file(tmp_path, monkeypatch, V1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        detector.load_coco_model(V1, allow_download=False)


# ----------------------------------------------------------------------------------------------- checkpoints


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


# ----------------------------------------------------------------------------------------------- dense outputs


def test_dense_outputs_shapes(result, demo):
    dense = result.dense
    n = sum(gh * gw * 9 for gh, gw in dense.grid_sizes)
    assert dense.cls_logits.shape == (n, DEMO_NUM_CLASSES) and dense.cls_logits.dtype == torch.float32
    assert dense.bbox_deltas.shape == (n, 4) and dense.anchors.shape == (n, 4)
    assert dense.levels.tolist() == sorted(dense.levels.tolist())
    assert np.bincount(dense.levels.numpy()).tolist() == dense.level_counts
    assert dense.grid_sizes == [(60, 80), (30, 40), (15, 20), (8, 10), (4, 5)]
    assert dense.input_size == (480, 640) and dense.image_size == (480, 640)
    maps = dense.max_prob_maps()
    assert [m.shape for m in maps] == dense.grid_sizes
    assert max(float(m.max()) for m in maps) == pytest.approx(float(result.candidates.scores.max()), abs=1e-6)
    assert set(result.timings_ms) == {"preprocess", "backbone+FPN", "head", "postprocess", "total"}
    assert result.device.startswith("CPU")


def test_torchvision_postprocess_of_dense_outputs_gives_the_models_detections(demo, small_image):
    result = run_inference(demo, small_image)
    dense = result.dense
    head, anchors = dense.split_per_level()
    model = demo.model
    with torch.inference_mode():
        dets = model.postprocess_detections(head, anchors, [dense.input_size])
        dets = model.transform.postprocess(dets, [dense.input_size], [dense.image_size])[0]
        own = model([detector.image_to_tensor(small_image)])[0]
    assert len(own["boxes"]) == len(result.detections) > 0
    for ref in (dets, own):
        np.testing.assert_allclose(result.detections.boxes, ref["boxes"].numpy(), atol=1e-4)
        np.testing.assert_array_equal(result.detections.labels, ref["labels"].numpy())
        np.testing.assert_allclose(result.detections.scores, ref["scores"].numpy(), atol=1e-6)


def test_candidates_are_torchvisions_pre_nms_set(result):
    cand = result.candidates
    assert (cand.scores > 0.05).all()
    assert (np.bincount(cand.levels, minlength=5) <= 1000).all()
    assert len(result.detections) <= len(cand)
    # every final detection is one of the candidates
    iou = box_iou(torch.from_numpy(result.detections.boxes), torch.from_numpy(cand.boxes)).numpy()
    assert (iou.max(axis=1) > 0.9999).all()


def test_score_threshold_is_validated(demo, small_image):
    with pytest.raises(ValueError, match="score_thresh"):
        run_inference(demo, small_image, score_thresh=1.5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        run_inference(demo, small_image.astype(np.float32))


def test_filter_detections(result):
    dets = result.candidates
    out = filter_detections(dets, score_thresh=0.3, classes={1, 2}, max_detections=3)
    assert len(out) <= 3 and set(out.labels.tolist()) <= {1, 2} and (out.scores >= 0.3).all()
    assert list(out.scores) == sorted(out.scores, reverse=True)
    assert len(filter_detections(Detections.empty(), score_thresh=0.5)) == 0


# ----------------------------------------------------------------------------------------------- losses vs GT


def test_loss_shares_sum_to_one_and_focal_matches_torchvision(result, scene, demo):
    dense = result.dense
    br = loss_breakdown(dense, scene.gt_boxes, scene.gt_labels)
    shares = br.shares()
    counted = shares[shares["group"] != "ignored"]
    for kind in ("CE", "Focal", "QFL"):
        assert counted[f"{kind} share"].sum() == pytest.approx(1.0, abs=1e-9)
    assert int(shares["anchors"].sum()) == len(dense.levels)
    assert (br.group == POSITIVE).sum() > 0
    assert br.per_anchor["focal"].sum() < br.per_anchor["ce"].sum()  # focal <= CE anchor by anchor

    # torchvision's own classification loss on the same dense outputs (Matcher + compute_loss) equals ours.
    gt = dense.to_input(scene.gt_boxes)
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    matched = matcher(box_iou(torch.from_numpy(gt), dense.anchors))
    targets = [{"boxes": torch.from_numpy(gt), "labels": torch.from_numpy(scene.gt_labels)}]
    head = {"cls_logits": dense.cls_logits[None]}
    tv = demo.model.head.classification_head.compute_loss(targets, head, [matched])
    assert br.totals()["focal"] == pytest.approx(float(tv), rel=1e-5)
    assert int((matched >= 0).sum()) == int(br.normalizer)


def test_focal_with_gamma_zero_and_no_alpha_is_ce(result, scene):
    br = loss_breakdown(result.dense, scene.gt_boxes, scene.gt_labels, alpha=-1.0, gamma=0.0)
    np.testing.assert_allclose(br.per_anchor["focal"], br.per_anchor["ce"], rtol=1e-6)
    under_ce = br.shares().set_index("group")
    assert (
        under_ce.loc["easy negative", "CE share"]
        > loss_breakdown(result.dense, scene.gt_boxes, scene.gt_labels)
        .shares()
        .set_index("group")
        .loc["easy negative", "Focal share"]
    )


def test_loss_breakdown_rejects_labels_outside_the_model(result):
    with pytest.raises(ValueError, match="label 40 is outside the model's 9 classes"):
        loss_breakdown(result.dense, np.array([[0, 0, 10, 10]]), np.array([40]))


def test_no_ground_truth_means_all_easy_negatives(result):
    br = loss_breakdown(result.dense, np.zeros((0, 4)), np.zeros(0))
    assert set(br.group.tolist()) == {0} and br.normalizer == 1.0
    assert br.shares().set_index("group").loc["easy negative", "CE share"] == pytest.approx(1.0)


def test_match_detections_tp_fp_missed(result, scene):
    m = match_detections(filter_detections(result.detections, score_thresh=0.3), scene.gt_boxes, scene.gt_labels)
    counts = m.counts()
    assert counts["true positives"] + counts["missed"] == len(scene.gt_boxes)
    assert counts["true positives"] >= len(scene.gt_boxes) - 1  # the demo model finds (nearly) every object
    empty = match_detections(Detections.empty(), scene.gt_boxes, scene.gt_labels)
    assert empty.missed.all()
    wrong_label = Detections(scene.gt_boxes[:1], np.ones(1, np.float32), scene.gt_labels[:1] % 8 + 1, np.zeros(1))
    assert not match_detections(wrong_label, scene.gt_boxes[:1], scene.gt_labels[:1]).is_tp.any()


# ----------------------------------------------------------------------------------------------- lock, OOM


def test_inference_holds_the_models_lock(demo, small_image, monkeypatch):
    seen = []
    forward = demo.model.backbone.forward

    def spy(x):
        seen.append(demo.lock.locked())
        return forward(x)

    monkeypatch.setattr(demo.model.backbone, "forward", spy)
    run_inference(demo, small_image)
    assert seen == [True]


def test_concurrent_inference_gives_identical_results(demo, small_image):
    outputs: list = [None] * 3

    def work(i: int) -> None:
        outputs[i] = run_inference(demo, small_image).detections

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outputs[1:]:
        np.testing.assert_array_equal(out.boxes, outputs[0].boxes)


def test_cuda_out_of_memory_runs_the_image_on_a_cpu_copy_and_leaves_the_shared_model(demo, small_image, monkeypatch):
    # The shared model as the server holds it on a GPU (here its weights stay on the CPU: only the label matters).
    reference = run_inference(demo, small_image).detections
    shared = dataclasses.replace(demo, device=torch.device("cuda"), notices=[])
    before = {k: (v.data_ptr(), v.clone()) for k, v in shared.model.state_dict().items()}
    real = detector._forward_dense
    calls = []

    def out_of_memory_on_the_gpu(model, image, device):
        calls.append((model, device))
        if device.type == "cuda":
            assert shared.lock.locked()
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        assert not shared.lock.locked()  # the private CPU copy runs without holding other requests up
        return real(model, image, device)

    monkeypatch.setattr(detector, "_forward_dense", out_of_memory_on_the_gpu)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out = run_inference(shared, small_image)

    assert [d.type for _, d in calls] == ["cuda", "cpu"]
    assert calls[0][0] is shared.model and calls[1][0] is not shared.model
    assert out.device.startswith("CPU") and "ran on a CPU copy" in out.notices[0]
    assert shared.device.type == "cuda" and shared.notices == [] and shared.model is demo.model
    after = shared.model.state_dict()
    assert all(after[k].data_ptr() == ptr and torch.equal(after[k], value) for k, (ptr, value) in before.items())
    np.testing.assert_array_equal(out.detections.boxes, reference.boxes)


def test_out_of_memory_on_the_cpu_is_not_retried(demo, small_image, monkeypatch):
    def out_of_memory(model, image, device):
        raise torch.OutOfMemoryError("out of memory (simulated)")

    monkeypatch.setattr(detector, "_forward_dense", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        run_inference(demo, small_image)


def test_cpu_copy_is_an_independent_equal_model(demo):
    clone = detector.cpu_copy(demo.model)
    assert clone is not demo.model and not clone.training
    ours, theirs = clone.state_dict(), demo.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value) and ours[key].data_ptr() != value.data_ptr()
        assert ours[key].device == CPU
    assert not any(p.requires_grad for p in clone.parameters())


def test_model_nbytes_counts_parameters_and_buffers(demo):
    assert detector.model_nbytes(torch.nn.Linear(3, 2)) == 32
    bn = torch.nn.BatchNorm2d(4)  # weight, bias, running mean and var (float32) and an int64 counter
    assert detector.model_nbytes(bn) == 4 * 4 * 4 + 8
    expected = sum(v.numel() * v.element_size() for v in demo.model.state_dict().values())
    assert detector.model_nbytes(demo) == detector.model_nbytes(demo.model) == expected
    assert 20e6 < expected < 40e6  # ~6.4 million float32 values


# ----------------------------------------------------------------------------------------------- fast path, view


def test_fast_path_on_cpu_matches_torchvision(demo, scene):
    model = copy.deepcopy(demo.model)
    fast = FastRetinaNet(copy.deepcopy(model), CPU)
    assert fast.folded_batchnorms == 12
    x = detector.image_to_tensor(scene.image)
    with torch.inference_mode():
        ref = model([x])[0]
    out = fast(x)
    assert match_detections_strict(ref, out) == (len(ref["boxes"]), len(ref["boxes"]))
    np.testing.assert_allclose(out["boxes"].numpy(), ref["boxes"].numpy(), atol=1e-3)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        fast(x[0])


def test_fold_batchnorm_keeps_outputs():
    from torchvision.models import resnet18

    net = resnet18(weights=None).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.rand(1, 3, 64, 64)
        ref = net(x)
        assert fold_batchnorm(net) == 20
        torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)


def test_sample_scenes_and_gt_lookup(scene, demo, result):
    assert scene.gt_boxes.shape == (len(scene.gt_labels), 4) and scene.gt_labels.min() >= 1
    with pytest.raises(ValueError, match="sample scene index"):
        sample_scene(99)
    coco = {
        "images": [{"id": 1, "file_name": "dir/a.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "circle"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0, "area": 200},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 1, "area": 100},
        ],
    }
    ds = load_coco(coco)
    boxes, labels = gt_for_image(ds, "a.jpg")
    assert boxes.tolist() == [[1.0, 2.0, 11.0, 22.0]] and labels.tolist() == [1]
    assert gt_for_image(ds, "b.jpg") is None
    m = match_detections(result.detections, scene.gt_boxes, scene.gt_labels)
    canvas = draw_detections(scene.image, result.detections, demo.class_names, matching=m, gt_boxes=scene.gt_boxes)
    assert canvas.shape == scene.image.shape and not np.array_equal(canvas, scene.image)
    with pytest.raises(ValueError, match="color_by"):
        draw_detections(scene.image, result.detections, demo.class_names, color_by="size")


def test_category_mismatch_compares_names_not_only_ids():
    ds = load_coco(
        {
            "images": [{"id": 1, "width": 50, "height": 50}],
            "categories": [{"id": 1, "name": "Person"}, {"id": 2, "name": "traffic  light"}, {"id": 5, "name": "x"}],
            "annotations": [],
        }
    )
    coco_like = {1: "person", 2: "Traffic light"}
    assert category_mismatch(ds, np.array([1, 2, 1]), coco_like) is None  # case and spaces ignored
    assert category_mismatch(ds, np.array([], np.int64), {}) is None
    assert category_mismatch(ds, np.array([1, 5]), {1: "class 1", 5: "class 5"}) is None  # unnamed: ids trusted
    msg = category_mismatch(ds, np.array([1, 5]), {1: "circle", 2: "square"})
    assert msg is not None
    assert "id 1 is 'Person' in the JSON but 'circle' for the model" in msg and "id 5 'x' is not a model class" in msg


def test_elongated_images_are_refused_before_the_transform_crashes(demo):
    assert detector.check_input_size(480, 640, 480, 640) == (480, 640)
    assert detector.check_input_size(20, 20000, 800, 1333) == (1, 1333)
    with pytest.raises(ValueError, match=r"too elongated: 20000x20 px would be resized to 640x0 px"):
        detector.check_input_size(20, 20000, 480, 640)
    with pytest.raises(ValueError, match="too elongated"):
        detector.run_inference(demo, np.zeros((20, 20000, 3), np.uint8))


def test_docstring_examples():
    import doctest

    assert doctest.testmod(detector).failed == 0
