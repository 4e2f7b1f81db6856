"""Fast RetinaNet inference: the same detections as torchvision's forward, several times faster on a GPU.

This is the benchmarked GPU path: ``bench/bench_detect.py`` times it against torchvision's eager forward and checks
that both give the same detections (results in BENCHMARKS.md). The app does not use it: the Live detections page
runs :func:`explorer.detection.inference.run_inference`, which needs the dense per-anchor outputs for its loss maps,
and the model scan needs them too, for losses equal to torchvision's ``compute_loss`` within 1e-5. This path returns
detections only, and what it guarantees is detection-level (each of eager float32's top-100 boxes matched with the
same label, IoU >= 0.95 and a score within 0.02: ``tests/detection/test_fast.py`` on CUDA), from float16 logits
(about three significant digits). The scan's GPU speed comes from batching instead
(:class:`explorer.detection.inference.BatchInference`).

:class:`FastRetinaNet` wraps a torchvision ``RetinaNet`` (any of the three architectures here) and, on CUDA:

- folds the backbone's BatchNorm layers into their convolutions;
- runs backbone, FPN and head in float16 with channels_last memory;
- captures them, plus the per-level sigmoid / top-k / box decoding of the postprocess, in one CUDA graph per
  input shape (static buffers; replaying costs one launch instead of hundreds);
- caches the anchors per input shape (float32, computed once with the model's own ``AnchorGenerator``);
- leaves only the score threshold and the class-wise NMS (``batched_nms``) outside the graph.

The arithmetic follows torchvision's: normalise then resize with ``interpolate(scale_factor, bilinear,
recompute_scale_factor=True)``, zero padding to a multiple of 32, score > 0.05, top 1,000 per level over
(anchor, class) pairs (taking the top 1,000 first and thresholding after selects the same set), decode, clip,
NMS 0.5, 300 per image, and boxes scaled back to the original image. On the CPU it runs in float32 without a graph,
with the BatchNorms folded and torchvision's own threshold-then-top-k postprocess.

Example:
    >>> model = build_demo_model().eval()                          # doctest: +SKIP
    >>> fast = FastRetinaNet(model, torch.device("cuda"))          # doctest: +SKIP
    >>> det = fast(torch.rand(3, 480, 640, device="cuda"))          # doctest: +SKIP
    >>> sorted(det)                                                 # doctest: +SKIP
    ['boxes', 'labels', 'scores']
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops
from torchvision.ops.misc import FrozenBatchNorm2d

from explorer.boxes import resize_factor
from explorer.detection.outputs import level_candidates

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d / FrozenBatchNorm2d that follows a bias-free or biased Conv2d into that conv, in place.

    The pairs are found the way torchvision's ResNets name them: ``convN`` / ``bnN`` siblings and
    ``downsample = Sequential(conv, bn)``. The BatchNorm becomes ``nn.Identity()``. Eval-mode output is unchanged
    up to float rounding. Returns the number of folded layers.
    """
    folded = 0
    for parent in list(module.modules()):
        children = dict(parent.named_children())
        for name, child in children.items():
            if not isinstance(child, nn.BatchNorm2d | FrozenBatchNorm2d):
                continue
            conv = None
            if name.startswith("bn") and isinstance(children.get("conv" + name[2:]), nn.Conv2d):
                conv = children["conv" + name[2:]]
            elif isinstance(parent, nn.Sequential) and name == "1" and isinstance(children.get("0"), nn.Conv2d):
                conv = children["0"]
            if conv is None or child.running_mean is None:
                continue
            scale = child.weight / torch.sqrt(child.running_var + child.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(child.running_mean)
            conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - child.running_mean) * scale + child.bias, requires_grad=False)
            setattr(parent, name, nn.Identity())
            folded += 1
    return folded


def decode_single(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``BoxCoder((1, 1, 1, 1)).decode_single`` with Python scalars (CUDA-graph capturable).

    Args:
        deltas: (N, 4) float32 (dx, dy, dw, dh); anchors: (N, 4) float32 xyxy.

    Returns:
        (N, 4) float32 xyxy, bit-identical to torchvision's.
    """
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + 0.5 * widths
    ctr_y = anchors[:, 1] + 0.5 * heights
    dx, dy = deltas[:, 0::4], deltas[:, 1::4]
    dw = torch.clamp(deltas[:, 2::4], max=BBOX_XFORM_CLIP)
    dh = torch.clamp(deltas[:, 3::4], max=BBOX_XFORM_CLIP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    half_w, half_h = 0.5 * pred_w, 0.5 * pred_h
    boxes = torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)
    return boxes.flatten(1)


@dataclass
class _Plan:
    """Everything fixed for one input shape: sizes, anchors, static buffers and the captured graph."""

    input_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    anchors: torch.Tensor  # (N, 4) float32
    level_counts: list[int]
    static_in: torch.Tensor | None = None
    static_out: tuple[torch.Tensor, ...] | None = None
    graph: torch.cuda.CUDAGraph | None = None


class FastRetinaNet:
    """Fast inference wrapper around a torchvision RetinaNet (batch 1).

    Args:
        model: the RetinaNet (its weights are converted in place: keep a copy for the reference).
        device: where to run; float16 + CUDA graphs only on CUDA.
        half: run backbone and head in float16 (CUDA only).
        cuda_graph: capture a CUDA graph per input shape (CUDA only).
        channels_last: channels_last memory format on CUDA.
    """

    def __init__(
        self,
        model: RetinaNet,
        device: torch.device,
        *,
        half: bool = True,
        cuda_graph: bool = True,
        channels_last: bool = True,
    ) -> None:
        self.device = device
        cuda = device.type == "cuda"
        self.dtype = torch.float16 if (half and cuda) else torch.float32
        self.use_graph = cuda_graph and cuda
        self.memory_format = torch.channels_last if (channels_last and cuda) else torch.contiguous_format
        model.eval()
        self.folded_batchnorms = fold_batchnorm(model)
        self.model = model.to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        for p in self.model.parameters():
            p.requires_grad_(False)
        t = model.transform
        self.min_size = float(t.min_size[-1])
        self.max_size = float(t.max_size)
        self.size_divisible = int(t.size_divisible)
        self.mean = torch.tensor(t.image_mean, device=device).view(3, 1, 1)
        self.std = torch.tensor(t.image_std, device=device).view(3, 1, 1)
        self.score_thresh = float(model.score_thresh)
        self.topk = int(model.topk_candidates)
        self.nms_thresh = float(model.nms_thresh)
        self.detections_per_img = int(model.detections_per_img)
        self.nms_prefix = max(1000, 3 * self.detections_per_img)
        self.num_classes = int(model.head.classification_head.num_classes)
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ stages
    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        """Normalise, then resize exactly as torchvision's GeneralizedRCNNTransform. (3, h, w) float32."""
        h, w = image.shape[-2:]
        scale = resize_factor(int(h), int(w), self.min_size, self.max_size)
        normed = (image - self.mean) / self.std
        return F.interpolate(
            normed[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]

    def _dense(self, x: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, ...]:
        """Backbone + head + per-level top-k, decoding and global ranking, all static shapes (graph-capturable).

        Returns:
            ``(prefix_boxes, prefix_scores, prefix_labels, scores, boxes, labels)``: the ``nms_prefix`` best
            candidates sorted by score (below-threshold ones scored -1), then all C candidates (C = sum over levels
            of min(topk, anchors_l * K)) in level order with below-threshold scores set to -1.
        """
        features = list(self.model.backbone(x).values())
        head = self.model.head(features)
        logits = head["cls_logits"][0]
        deltas = head["bbox_regression"][0]
        boxes, scores, labels = [], [], []
        start = 0
        k_classes = self.num_classes
        for count in plan.level_counts:
            # sigmoid is monotonic: rank the raw logits and take the sigmoid of the k selected only.
            lv_logits = logits[start : start + count].flatten()
            top_logits, top_idx = lv_logits.topk(min(self.topk, lv_logits.numel()))
            top_scores = torch.sigmoid(top_logits.float())
            anchor_idx = torch.div(top_idx, k_classes, rounding_mode="floor")
            decoded = decode_single(
                deltas[start : start + count][anchor_idx].float(), plan.anchors[start : start + count][anchor_idx]
            )
            boxes.append(box_ops.clip_boxes_to_image(decoded, plan.input_hw))
            scores.append(top_scores)
            labels.append(top_idx % k_classes)
            start += count
        all_boxes, all_scores, all_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        # Rank every candidate, below-threshold ones pushed to the end (score -1), so that NMS can start on a
        # short prefix: greedy NMS keeps or drops a box only because of higher-scoring boxes.
        masked = torch.where(all_scores > self.score_thresh, all_scores, torch.full_like(all_scores, -1.0))
        top_scores, order = masked.topk(min(self.nms_prefix, masked.numel()))
        return all_boxes[order], top_scores, all_labels[order], masked, all_boxes, all_labels

    def _dense_dynamic(self, x: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Without a graph (CPU): torchvision's threshold-then-top-k per level, on the valid scores only.

        Returns:
            (C, 4) boxes, (C,) scores > threshold, (C,) labels, in level order.
        """
        features = list(self.model.backbone(x).values())
        head = self.model.head(features)
        boxes, scores, labels, _ = level_candidates(
            head["cls_logits"][0].float(),
            head["bbox_regression"][0].float(),
            plan.anchors,
            plan.level_counts,
            plan.input_hw,
            score_thresh=self.score_thresh,
            topk=self.topk,
        )
        return boxes, scores, labels

    def _plan(self, resized: torch.Tensor) -> _Plan:
        input_hw = (int(resized.shape[-2]), int(resized.shape[-1]))
        plan = self._plans.get(input_hw)
        if plan is not None:
            return plan
        d = self.size_divisible
        padded_hw = (int(math.ceil(input_hw[0] / d) * d), int(math.ceil(input_hw[1] / d) * d))
        probe = torch.zeros((1, 3, *padded_hw), device=self.device, dtype=self.dtype).to(
            memory_format=self.memory_format
        )
        with torch.inference_mode():
            features = list(self.model.backbone(probe).values())
        shapes = [torch.empty((1, 1, *f.shape[-2:]), device=self.device) for f in features]
        images = ImageList(torch.empty((1, 3, *padded_hw), device=self.device), [input_hw])
        anchors = self.model.anchor_generator(images, shapes)[0].float()
        a = self.model.anchor_generator.num_anchors_per_location()[0]
        counts = [int(f.shape[-2] * f.shape[-1] * a) for f in features]
        plan = _Plan(input_hw, padded_hw, anchors, counts)
        if self.use_graph:
            plan.static_in = probe
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(2):  # warm up (cuDNN algorithm choice) outside the capture
                    self._dense(plan.static_in, plan)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                plan.static_out = self._dense(plan.static_in, plan)
            plan.graph = graph
        if len(self._plans) >= 4:  # bound memory: a few input shapes at most
            self._plans.pop(next(iter(self._plans)))
        self._plans[input_hw] = plan
        return plan

    # ------------------------------------------------------------------------------------------ call
    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detect objects in one image.

        Args:
            image: (3, H, W) float tensor in [0, 1] (as torchvision's RetinaNet takes it), on any device.

        Returns:
            ``{"boxes": (D, 4) float32 xyxy in original pixels, "scores": (D,), "labels": (D,) int64}``, best first.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a (3, H, W) tensor, got shape {tuple(image.shape)}")
        with self._lock:
            image = image.to(self.device, torch.float32, non_blocking=True)
            resized = self._resize(image)
            plan = self._plan(resized)
            h, w = plan.input_hw
            if plan.graph is not None:
                assert plan.static_in is not None and plan.static_out is not None
                plan.static_in.zero_()
                plan.static_in[0, :, :h, :w].copy_(resized)
                plan.graph.replay()
                boxes, scores, labels, all_scores, all_boxes, all_labels = plan.static_out
                n_valid = int((scores > self.score_thresh).sum())
                boxes, scores, labels = boxes[:n_valid], scores[:n_valid], labels[:n_valid]
                order = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
                if len(order) < self.detections_per_img and n_valid == plan.static_out[1].numel():
                    # The prefix was full of valid boxes but kept too few: run NMS on every valid candidate.
                    keep = all_scores > self.score_thresh
                    boxes, scores, labels = all_boxes[keep], all_scores[keep], all_labels[keep]
                    order = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
            else:
                x = resized.new_zeros((1, 3, *plan.padded_hw))
                x[0, :, :h, :w] = resized
                x = x.to(dtype=self.dtype, memory_format=self.memory_format)
                boxes, scores, labels = self._dense_dynamic(x, plan)
                order = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
            order = order[: self.detections_per_img]
            oh, ow = image.shape[-2:]
            ratio = torch.tensor([ow / w, oh / h, ow / w, oh / h], device=boxes.device, dtype=boxes.dtype)
            return {"boxes": boxes[order] * ratio, "scores": scores[order].clone(), "labels": labels[order].clone()}


def match_detections_strict(
    reference: dict[str, torch.Tensor],
    candidate: dict[str, torch.Tensor],
    *,
    top: int = 100,
    iou_thresh: float = 0.95,
    score_tol: float = 0.02,
) -> tuple[int, int]:
    """How many of the reference's ``top`` best boxes have a candidate box of the same label with IoU >= thresh
    and a score within ``score_tol``. Returns ``(matched, compared)``."""
    ref_boxes = reference["boxes"][:top].float().cpu()
    if len(ref_boxes) == 0:
        return 0, 0
    cand_boxes = candidate["boxes"].float().cpu()
    if len(cand_boxes) == 0:
        return 0, len(ref_boxes)
    iou = box_ops.box_iou(ref_boxes, cand_boxes)
    same = reference["labels"][:top].cpu()[:, None] == candidate["labels"].cpu()[None, :]
    close = (reference["scores"][:top].float().cpu()[:, None] - candidate["scores"].float().cpu()[None, :]).abs()
    ok = (iou >= iou_thresh) & same & (close <= score_tol)
    return int(ok.any(dim=1).sum()), len(ref_boxes)
