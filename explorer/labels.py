"""The one anchor-label vocabulary: codes, display names, table columns and colours.

Every module, figure and page speaks of an anchor's label through this module. The codes order the labels from
"least" to "most" matched; torchvision's ``Matcher`` sentinels (negative numbers) sit beside them where a raw match
meets a label.

Example:
    >>> AnchorLabel.HARD_NEGATIVE.display, AnchorLabel.HARD_NEGATIVE.column, int(AnchorLabel.POSITIVE)
    ('hard negative', 'hard_negatives', 3)
    >>> [label.display for label in DISPLAY_ORDER]
    ['positive', 'ignored', 'hard negative', 'easy negative']
    >>> COLORS["easy negative"], rgb(COLORS["positive"])
    ('#969696', (0, 200, 83))
"""

from __future__ import annotations

from enum import IntEnum


class AnchorLabel(IntEnum):
    """An anchor's label for one image: easy negative (overlaps no box), hard negative (0 < IoU < neg), ignored
    (between the thresholds), positive (IoU >= pos or a box's low-quality match)."""

    EASY_NEGATIVE = 0
    HARD_NEGATIVE = 1
    IGNORED = 2
    POSITIVE = 3

    @property
    def display(self) -> str:
        """The name shown to people ("hard negative")."""
        return _DISPLAY[self]

    @property
    def column(self) -> str:
        """The name of the per-image count column in tables ("hard_negatives")."""
        return _COLUMNS[self]

    @classmethod
    def from_display(cls, name: str) -> AnchorLabel:
        """The label of a display name; ValueError naming the accepted ones otherwise."""
        for label, text in _DISPLAY.items():
            if text == name:
                return label
        raise ValueError(f"unknown anchor label {name!r}; expected one of {sorted(_DISPLAY.values())}")


EASY_NEGATIVE, HARD_NEGATIVE, IGNORED, POSITIVE = (
    AnchorLabel.EASY_NEGATIVE,
    AnchorLabel.HARD_NEGATIVE,
    AnchorLabel.IGNORED,
    AnchorLabel.POSITIVE,
)

#: torchvision ``Matcher`` codes (``models/detection/_utils.py``): IoU below the low threshold, and between them.
BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2

_DISPLAY: dict[AnchorLabel, str] = {
    EASY_NEGATIVE: "easy negative",
    HARD_NEGATIVE: "hard negative",
    IGNORED: "ignored",
    POSITIVE: "positive",
}
_COLUMNS: dict[AnchorLabel, str] = {
    EASY_NEGATIVE: "easy_negatives",
    HARD_NEGATIVE: "hard_negatives",
    IGNORED: "ignored",
    POSITIVE: "positives",
}

#: Code -> display name (for tables keyed by code).
LABEL_NAMES: dict[int, str] = {int(k): v for k, v in _DISPLAY.items()}
#: The order in which tables, legends and stacks list the labels.
DISPLAY_ORDER: tuple[AnchorLabel, ...] = (POSITIVE, IGNORED, HARD_NEGATIVE, EASY_NEGATIVE)

#: One colour per label, on every page (charts and image overlays); "negative" is the Loss lab's
#: positives-vs-negatives split. Easy negatives are grey: the background that swamps the loss.
COLORS: dict[str, str] = {
    "positive": "#00c853",
    "ignored": "#f0e442",
    "hard negative": "#ff8c00",
    "easy negative": "#969696",
    "negative": "#969696",
}


def rgb(color: str) -> tuple[int, int, int]:
    """A ``#rrggbb`` colour as an (r, g, b) tuple of ints (for drawing on images)."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


#: Code -> RGB, for the image overlays.
LABEL_RGB: dict[int, tuple[int, int, int]] = {int(k): rgb(COLORS[v]) for k, v in _DISPLAY.items()}


def negatives_per_positive(negatives: float, positives: float) -> float:
    """The imbalance ratio: (hard + easy) negatives per positive; ``inf`` when there is no positive.

    Example:
        >>> negatives_per_positive(900, 3), negatives_per_positive(900, 0)
        (300.0, inf)
    """
    return negatives / positives if positives else float("inf")


def ratio_text(value: float) -> str:
    """A negatives-per-positive ratio for people: "1,234", or "∞ (no positive)".

    Example:
        >>> ratio_text(1234.4), ratio_text(float("inf"))
        ('1,234', '∞ (no positive)')
    """
    return "∞ (no positive)" if value == float("inf") else f"{value:,.0f}"
