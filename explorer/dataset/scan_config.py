"""What the dataset scan labels with: anchors, IoU thresholds, low-quality matches, representation tags.

Example:
    >>> ScanConfig(pos_thresh=0.6, neg_thresh=0.3).describe()["neg_thresh"]
    0.3
    >>> ScanConfig(pos_thresh=0.3, neg_thresh=0.4)
    Traceback (most recent call last):
    ...
    ValueError: need 0 < neg_thresh <= pos_thresh <= 1, got neg_thresh=0.4, pos_thresh=0.3
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from explorer.anchors.grid import AnchorConfig


@dataclass(frozen=True)
class ScanConfig:
    """What the scan labels with.

    Attributes:
        anchors: the anchor configuration and input-size rules (torchvision's RetinaNet by default).
        pos_thresh: IoU >= pos_thresh is positive (0.5).
        neg_thresh: IoU < neg_thresh is negative, [neg, pos) is ignored (0.4).
        low_quality: torchvision's ``allow_low_quality_matches`` (True).
        under, over: a class is tagged under-represented when its share of the positive anchors is below
            ``under`` times the uniform share 1 / C, over-represented when above ``over`` times it.
    """

    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    pos_thresh: float = 0.5
    neg_thresh: float = 0.4
    low_quality: bool = True
    under: float = 0.5
    over: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_thresh <= self.pos_thresh <= 1.0:
            raise ValueError(
                "need 0 < neg_thresh <= pos_thresh <= 1, "
                f"got neg_thresh={self.neg_thresh}, pos_thresh={self.pos_thresh}"
            )
        if not 0.0 <= self.under <= 1.0 <= self.over:
            raise ValueError(f"need 0 <= under <= 1 <= over, got under={self.under}, over={self.over}")

    def describe(self) -> dict:
        """Plain dict of the configuration (for display and cache keys)."""
        d = asdict(self)
        d["anchors"] = asdict(self.anchors)
        return d
