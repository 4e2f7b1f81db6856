"""Exactness goldens for the dynamic assigners, produced by the reference code itself.

Writes ``tests/anchors/goldens/assigners.npz``: the inputs of every case and the outputs of

- mmdet 3.3.0 ``TaskAlignedAssigner.assign`` (TOOD) and ``TOODHead._get_targets_single`` (the normalized soft
  target ``t / max t * max IoU``), called on a bare object that carries only the attributes that method reads;
- Ultralytics ``TaskAlignedAssigner`` (``ultralytics/utils/tal.py``) as ``v8DetectionLoss`` builds it (topk 10,
  alpha 0.5, beta 6, the model strides), and its ``get_pos_mask`` + ``select_highest_overlaps`` for the raw metric and
  CIoU of each positive;
- mmdet 3.3.0 ``SimOTAAssigner.assign`` with its defaults, priors ``(cx, cy, stride_w, stride_h)``, and the cost
  matrix and candidate mask it hands to its own ``dynamic_k_matching`` (a subclass records them, nothing else).

The project never imports mmdet or ultralytics: its tests read the .npz only.

Versions used for the committed file (also stored in it, key ``meta__versions``): mmdet 3.3.0, mmengine 0.10.7,
mmcv-lite 2.1.0, ultralytics 8.4.190, torch 2.14.1 (CPU, 2 threads), numpy 2.4.6, Python 3.11.7.

How to run (a throwaway environment outside the repository; nothing here is a project dependency)::

    python3.11 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/refenv/bin/pip install --no-deps mmdet==3.3.0 mmengine==0.10.7 mmcv-lite==2.1.0 ultralytics==8.4.190
    /tmp/refenv/bin/pip install addict yapf termcolor rich pyyaml packaging opencv-python-headless pycocotools \
        shapely terminaltables scipy matplotlib seaborn six tqdm
    /tmp/refenv/bin/python bench/goldens/make_assigner_goldens.py

mmcv-lite is mmcv without its compiled ops (``mmcv.ops``: NMS, RoIAlign, deformable convolution...). mmdet's package
imports reach ``mmcv.ops``, so :func:`_stub_mmcv_ops` installs an import hook that answers every ``mmcv.ops`` name
with a function that raises when called (and the same for mmcv-lite's missing ``MultiScaleDeformableAttention``).
None of the code run here calls them; every mmdet and ultralytics file runs unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import platform
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[2] / "tests" / "anchors" / "goldens" / "assigners.npz"


def _unavailable(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("mmcv.ops is not installed (mmcv-lite); the reference code must not call it")


def _stub_getattr(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return _unavailable


class _StubOps(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``mmcv.ops`` and every ``mmcv.ops.*`` module as a stub."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "mmcv.ops" or fullname.startswith("mmcv.ops."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        mod = types.ModuleType(spec.name)
        mod.__path__ = []
        mod.__getattr__ = _stub_getattr  # type: ignore[method-assign]
        return mod

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _stub_mmcv_ops() -> None:
    sys.meta_path.insert(0, _StubOps())
    import mmcv.cnn.bricks.transformer as tr

    if not hasattr(tr, "MultiScaleDeformableAttention"):
        tr.MultiScaleDeformableAttention = _unavailable


# ---------------------------------------------------------------- cases


def _grid_anchors(height: int, width: int, strides: list[int], ratios: tuple[float, ...]) -> dict[str, np.ndarray]:
    """torchvision-style anchors (first centre on pixel (0, 0), ratio-major per location, size 4 * stride)."""
    anchors, levels, stride_wh = [], [], []
    for li, s in enumerate(strides):
        gh, gw = -(-height // s), -(-width // s)
        size = 4.0 * s
        ws = np.array([size / np.sqrt(r) for r in ratios])
        hs = np.array([size * np.sqrt(r) for r in ratios])
        cell = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)
        ys, xs = np.meshgrid(np.arange(gh) * s, np.arange(gw) * s, indexing="ij")
        shifts = np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], axis=1)
        a = (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)
        anchors.append(a)
        levels.append(np.full(len(a), li))
        stride_wh.append(np.full((len(a), 2), s))
    return {
        "anchors": np.concatenate(anchors).astype(np.float32),
        "levels": np.concatenate(levels).astype(np.int64),
        "strides": np.concatenate(stride_wh).astype(np.float32),
        "model_strides": np.array(strides, np.float32),
    }


def _random_gt(rng: np.random.Generator, m: int, height: int, width: int) -> np.ndarray:
    s = np.exp(rng.uniform(np.log(6), np.log(0.7 * min(height, width)), m))
    ar = np.exp(rng.uniform(-0.7, 0.7, m))
    w, h = s / np.sqrt(ar), s * np.sqrt(ar)
    cx, cy = rng.uniform(0, width, m), rng.uniform(0, height, m)
    b = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return b.clip(0, [width, height, width, height]).astype(np.float32)


def _jitter(rng: np.random.Generator, boxes: np.ndarray, scale: float) -> np.ndarray:
    """Predicted boxes: each box's centre moved and its sides rescaled at random (float32)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    cx = cx + rng.normal(0, scale, len(boxes)) * w
    cy = cy + rng.normal(0, scale, len(boxes)) * h
    w = w * np.exp(rng.normal(0, scale, len(boxes)))
    h = h * np.exp(rng.normal(0, scale, len(boxes)))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def _scores(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return (1 / (1 + np.exp(-rng.normal(-1.5, 1.5, (n, c))))).astype(np.float32)


def _case_ref63() -> dict[str, np.ndarray]:
    """reference.md 6.2/6.3: 4x4 priors at stride 8 (32 px squares) and 2x2 at stride 16 (64 px), two GTs."""
    ii, jj = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    c = np.stack([8 * jj.ravel(), 8 * ii.ravel()], axis=1).astype(np.float32)
    level_a = np.concatenate([c - 16, c + 16], axis=1)
    ii, jj = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    c = np.stack([16 * jj.ravel(), 16 * ii.ravel()], axis=1).astype(np.float32)
    level_b = np.concatenate([c - 32, c + 32], axis=1)
    priors = np.concatenate([level_a, level_b]).astype(np.float32)
    scores = torch.stack([torch.linspace(0.05, 0.95, 20), torch.linspace(0.9, 0.1, 20)], 1).numpy()
    return {
        "anchors": priors,
        "levels": np.array([0] * 16 + [1] * 4, np.int64),
        "strides": np.array([[8, 8]] * 16 + [[16, 16]] * 4, np.float32),
        "model_strides": np.array([8, 16], np.float32),
        "gt": np.array([[5.3, 2.7, 29.3, 18.7], [14.6, 9.5, 30.2, 29.1]], np.float32),
        "gt_labels": np.array([0, 1], np.int64),
        "scores": scores.astype(np.float32),
        "decoded": priors.copy(),
        "image_hw": np.array([32, 32], np.int64),
    }


def _case_random(seed: int, hw: tuple[int, int], strides: list[int], ratios: tuple[float, ...], m: int, c: int):
    rng = np.random.default_rng(seed)
    case = _grid_anchors(*hw, strides, ratios)
    n = len(case["anchors"])
    case["gt"] = _random_gt(rng, m, *hw)
    case["gt_labels"] = rng.integers(0, c, m).astype(np.int64)
    case["scores"] = _scores(rng, n, c)
    case["decoded"] = _jitter(rng, case["anchors"], 0.25)
    case["image_hw"] = np.array(hw, np.int64)
    return case


def _case_ties() -> dict[str, np.ndarray]:
    """Ties everywhere: the anchors of a location share one predicted box, scores take three values, two GTs are
    the same box with the same class, a third is that box again with another class."""
    rng = np.random.default_rng(3)
    case = _grid_anchors(64, 96, [8, 16], (0.5, 1.0, 2.0))
    n = len(case["anchors"])
    loc_box = _jitter(rng, case["anchors"][1::3], 0.15)  # the square anchor of each location, jittered
    case["decoded"] = np.repeat(loc_box, 3, axis=0)
    case["scores"] = rng.choice(np.array([0.25, 0.5, 0.75], np.float32), size=(n, 3))
    case["gt"] = np.array(
        [[10, 10, 42, 42], [10, 10, 42, 42], [10, 10, 42, 42], [40, 8, 88, 40], [4, 36, 36, 60], [48, 32, 80, 64]],
        np.float32,
    )
    case["gt_labels"] = np.array([1, 1, 2, 0, 1, 1], np.int64)
    case["image_hw"] = np.array([64, 96], np.int64)
    return case


def _case_no_candidate() -> dict[str, np.ndarray]:
    """A 2x2 GT between anchor centres, a GT far outside the image, and ordinary GTs."""
    rng = np.random.default_rng(4)
    case = _grid_anchors(64, 64, [8, 16, 32], (1.0,))
    n = len(case["anchors"])
    case["gt"] = np.array([[3, 3, 5, 5], [1000, 1000, 1040, 1030], [6, 10, 50, 40], [20, 30, 60, 62]], np.float32)
    case["gt_labels"] = np.array([0, 1, 1, 0], np.int64)
    case["scores"] = _scores(rng, n, 2)
    case["decoded"] = _jitter(rng, case["anchors"], 0.2)
    case["image_hw"] = np.array([64, 64], np.int64)
    return case


def _case_all_outside() -> dict[str, np.ndarray]:
    case = _case_no_candidate()
    case["gt"] = np.array([[1000, 1000, 1040, 1030], [-500, -400, -450, -380]], np.float32)
    case["gt_labels"] = np.array([0, 1], np.int64)
    return case


def _case_empty() -> dict[str, np.ndarray]:
    case = _case_random(5, (48, 64), [8, 16], (0.5, 1.0, 2.0), 1, 3)
    case["gt"] = np.zeros((0, 4), np.float32)
    case["gt_labels"] = np.zeros(0, np.int64)
    return case


def _case_extreme_scores() -> dict[str, np.ndarray]:
    """Scores of exactly 0 and 1 (TAL's t = 0; SimOTA's BCE clamped at -100) mixed with ordinary ones."""
    case = _case_random(6, (64, 80), [8, 16, 32], (0.5, 1.0, 2.0), 6, 3)
    rng = np.random.default_rng(60)
    mask = rng.random(case["scores"].shape)
    case["scores"] = np.where(mask < 0.2, 0.0, np.where(mask > 0.9, 1.0, case["scores"])).astype(np.float32)
    return case


def cases() -> dict[str, dict[str, np.ndarray]]:
    return {
        "ref63": _case_ref63(),
        "random_a": _case_random(1, (96, 128), [8, 16, 32], (0.5, 1.0, 2.0), 12, 6),
        "random_b": _case_random(2, (160, 160), [8, 16, 32, 64], (1.0,), 20, 4),
        "random_c": _case_random(7, (200, 240), [8, 16, 32, 64, 128], (0.5, 1.0, 2.0), 15, 5),
        "coco80": _case_random(8, (64, 96), [8, 16, 32], (1.0,), 10, 80),
        "ties": _case_ties(),
        "no_candidate": _case_no_candidate(),
        "all_outside": _case_all_outside(),
        "empty": _case_empty(),
        "extreme_scores": _case_extreme_scores(),
    }


#: topk of mmdet's TAL per case (reference.md 6.3's vector uses 4; TOOD's default is 13).
MMDET_TOPK = {"ref63": 4}


# ---------------------------------------------------------------- the reference runs


def run_mmdet_tal(case: dict[str, np.ndarray], topk: int) -> dict[str, np.ndarray]:
    from mmdet.models.dense_heads.tood_head import TOODHead
    from mmdet.models.task_modules.assigners import TaskAlignedAssigner
    from mmdet.models.task_modules.samplers import PseudoSampler
    from mmengine.structures import InstanceData

    priors = torch.from_numpy(case["anchors"])
    scores = torch.from_numpy(case["scores"])
    decoded = torch.from_numpy(case["decoded"])
    gt = InstanceData(bboxes=torch.from_numpy(case["gt"]), labels=torch.from_numpy(case["gt_labels"]))
    assigner = TaskAlignedAssigner(topk=topk)
    res = assigner.assign(InstanceData(priors=priors, bboxes=decoded, scores=scores), gt, alpha=1, beta=6)
    head = types.SimpleNamespace(
        train_cfg={"allowed_border": -1, "pos_weight": -1},
        alignment_assigner=assigner,
        alpha=1,
        beta=6,
        sampler=PseudoSampler(),
        num_classes=scores.shape[1],
    )
    valid = torch.ones(len(priors), dtype=torch.bool)
    meta = {"img_shape": tuple(int(v) for v in case["image_hw"])}
    _, labels, _, _, norm = TOODHead._get_targets_single(head, scores, decoded, priors, valid, gt, meta)
    return {
        "gt_inds": res.gt_inds.numpy().astype(np.int64),
        "max_overlaps": res.max_overlaps.numpy().astype(np.float32),
        "assign_metrics": res.assign_metrics.numpy().astype(np.float32),
        "norm_metrics": norm.numpy().astype(np.float32),
        "labels": labels.numpy().astype(np.int64),
    }


def run_ultralytics_tal(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ultralytics.utils.tal import TaskAlignedAssigner

    n, c = case["scores"].shape
    m = len(case["gt"])
    assigner = TaskAlignedAssigner(
        topk=10, num_classes=c, alpha=0.5, beta=6.0, stride=case["model_strides"].tolist(), topk2=None
    )
    pd_scores = torch.from_numpy(case["scores"])[None]
    pd_bboxes = torch.from_numpy(case["decoded"])[None]
    a = torch.from_numpy(case["anchors"])
    anc_points = torch.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2], dim=1)
    gt_labels = torch.from_numpy(case["gt_labels"]).float().view(1, m, 1)
    gt_bboxes = torch.from_numpy(case["gt"]).view(1, m, 4)
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)  # as v8DetectionLoss builds it
    out = assigner(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)
    target_labels, _, target_scores, fg_mask, target_gt_idx = out
    metric = np.zeros(n, np.float32)
    ciou = np.zeros(n, np.float32)
    if m:
        assigner.bs, assigner.n_max_boxes = 1, m
        mask_pos, align_metric, overlaps = assigner.get_pos_mask(
            pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt
        )
        gt_idx, fg, _ = assigner.select_highest_overlaps(mask_pos, overlaps, m, align_metric)
        assert torch.equal(gt_idx, target_gt_idx) and torch.equal(fg.bool(), fg_mask)
        cols = torch.arange(n)
        metric = align_metric[0, gt_idx[0], cols].numpy().astype(np.float32)
        ciou = overlaps[0, gt_idx[0], cols].numpy().astype(np.float32)
    return {
        "fg_mask": fg_mask[0].numpy().astype(bool),
        "target_gt_idx": target_gt_idx[0].numpy().astype(np.int64),
        "target_labels": target_labels[0].numpy().astype(np.int64),
        "target_scores": target_scores[0].numpy().astype(np.float32),
        "align_metric": metric,
        "overlaps": ciou,
    }


def run_simota(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from mmdet.models.task_modules.assigners import SimOTAAssigner
    from mmengine.structures import InstanceData

    class Recording(SimOTAAssigner):
        """mmdet's SimOTAAssigner; only records the cost matrix and the candidate mask it is handed."""

        def dynamic_k_matching(self, cost, pairwise_ious, num_gt, valid_mask):
            self.seen = (cost.clone(), valid_mask.clone())
            return super().dynamic_k_matching(cost, pairwise_ious, num_gt, valid_mask)

    a = case["anchors"]
    centres = np.stack([(a[:, 0] + a[:, 2]) / np.float32(2), (a[:, 1] + a[:, 3]) / np.float32(2)], axis=1)
    priors = torch.from_numpy(np.concatenate([centres, case["strides"]], axis=1).astype(np.float32))
    pred = InstanceData(
        priors=priors, bboxes=torch.from_numpy(case["decoded"]), scores=torch.from_numpy(case["scores"])
    )
    gt = InstanceData(bboxes=torch.from_numpy(case["gt"]), labels=torch.from_numpy(case["gt_labels"]))
    assigner = Recording(center_radius=2.5, candidate_topk=10, iou_weight=3.0, cls_weight=1.0)
    res = assigner.assign(pred, gt)
    cost, valid = getattr(assigner, "seen", (torch.zeros(0, len(case["gt"])), torch.zeros(len(a), dtype=torch.bool)))
    return {
        "priors": priors.numpy(),
        "gt_inds": res.gt_inds.numpy().astype(np.int64),
        "max_overlaps": res.max_overlaps.numpy().astype(np.float32),
        "cost": cost.numpy().astype(np.float32),
        "valid": valid.numpy().astype(bool),
    }


def versions() -> str:
    import mmcv
    import mmdet
    import mmengine
    import ultralytics

    return (
        f"mmdet {mmdet.__version__}, mmengine {mmengine.__version__}, mmcv-lite {mmcv.__version__}, "
        f"ultralytics {ultralytics.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}, Python {platform.python_version()}"
    )


def main() -> None:
    _stub_mmcv_ops()
    out: dict[str, np.ndarray] = {}
    names = cases()
    for name, case in names.items():
        for key, value in case.items():
            out[f"{name}__in__{key}"] = value
        results = {
            "tal_mmdet": run_mmdet_tal(case, MMDET_TOPK.get(name, 13)),
            "tal_ultralytics": run_ultralytics_tal(case),
            "simota": run_simota(case),
        }
        for method, res in results.items():
            for key, value in res.items():
                out[f"{name}__{method}__{key}"] = value
        out[f"{name}__tal_mmdet_topk"] = np.array(MMDET_TOPK.get(name, 13))
        pos = {k: int((v["gt_inds"] > 0).sum() if "gt_inds" in v else v["fg_mask"].sum()) for k, v in results.items()}
        print(f"{name:16s} N={len(case['anchors']):5d} M={len(case['gt']):3d} positives {pos}")
    out["meta__cases"] = np.array(list(names))
    out["meta__versions"] = np.array(versions())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(versions())
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
