"""The project's demo detector: a small RetinaNet built from torchvision parts.

It is trained from scratch on the synthetic shapes (``python -m explorer.detection.train_demo``) and its weights ship in
``explorer/detection/models/``, so the app has a working detector offline. The architecture:

- backbone: ResNet-10 (torchvision ``ResNet`` with one ``BasicBlock`` per stage, BatchNorm), C3..C5;
- FPN with 128 channels and P6/P7 from P5 (``LastLevelP6P7(128, 128)``), strides 8..128;
- head: 2 x (conv3x3 + GroupNorm(16) + ReLU) per branch instead of torchvision's 4 x 256 channels;
- anchors: torchvision's rule (x, int(x 2^(1/3)), int(x 2^(2/3))) with x in 16..256 (half torchvision's), ratios
  (0.5, 1, 2), A = 9;
- input: shorter side 480, longer side at most 640 (the synthetic 640x480 scenes pass unscaled);
- labels: category ids 1..8 used directly over 9 logits (index 0 unused), as torchvision does for COCO.

The scene distribution and the seeds of its training and held-out scenes live here too, so the app draws the held-out
samples without importing the training script.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from explorer.synthetic import CLASS_NAMES, SceneConfig

#: Anchor sizes per level P3..P7 (torchvision's octave rule from 16 px).
DEMO_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = tuple(
    (x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (16, 32, 64, 128, 256)
)
DEMO_ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)
DEMO_MIN_SIZE = 480
DEMO_MAX_SIZE = 640
DEMO_FPN_CHANNELS = 128
DEMO_HEAD_CONVS = 2
#: Logit count: background slot 0 plus the 8 shape classes (ids 1..8).
DEMO_NUM_CLASSES = len(CLASS_NAMES) + 1

#: The scene distribution the demo model is trained and evaluated on: the default scenes (640x480, 3-14 objects,
#: long-tailed classes) with objects of 16-320 px drawn log-uniformly (the sample data goes down to 8 px and is
#: skewed to small sizes, which a model this small cannot learn in minutes).
DEMO_SCENE_CONFIG = SceneConfig(min_size=16.0, max_size=320.0, small_bias=1.0)
#: Seeds of the training scenes and of the held-out evaluation scenes (the Live detections page's samples).
TRAIN_SEED = 20261124
HELDOUT_SEED = 20261125


def scene_seeds(n_images: int, seed: int) -> list[int]:
    """The per-scene seeds of ``make_dataset(n_images, seed)`` (same derivation)."""
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_images)]


def build_demo_model(num_classes: int = DEMO_NUM_CLASSES) -> RetinaNet:
    """Build the demo RetinaNet with random weights (no download of any kind).

    Args:
        num_classes: number of logits per anchor, background slot included (9 for the shapes).

    Returns:
        A ``torchvision.models.detection.RetinaNet`` in training mode, about 5.9 M parameters.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    body = ResNet(BasicBlock, [1, 1, 1, 1])
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=[128, 256, 512],
        out_channels=DEMO_FPN_CHANNELS,
        extra_blocks=LastLevelP6P7(DEMO_FPN_CHANNELS, DEMO_FPN_CHANNELS),
    )
    anchor_generator = AnchorGenerator(DEMO_ANCHOR_SIZES, (DEMO_ASPECT_RATIOS,) * len(DEMO_ANCHOR_SIZES))
    head = RetinaNetHead(
        DEMO_FPN_CHANNELS,
        anchor_generator.num_anchors_per_location()[0],
        num_classes,
        norm_layer=partial(nn.GroupNorm, 16),
    )
    for branch in (head.classification_head, head.regression_head):
        branch.conv = nn.Sequential(*list(branch.conv)[:DEMO_HEAD_CONVS])
    head.regression_head._loss_type = "giou"
    return RetinaNet(
        backbone,
        num_classes,
        min_size=DEMO_MIN_SIZE,
        max_size=DEMO_MAX_SIZE,
        anchor_generator=anchor_generator,
        head=head,
    )
