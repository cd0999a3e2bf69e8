"""What looked wrong with a refused film: simple pixel measures of the model-size image, each
against the range the training X-rays span.

The gate (model.ood) refuses on the distance of the model's pooled features, a number a reader
cannot act on. These measures name what a person can check (the film is inverted, half black,
covered in white marks, a screenshot...). They only describe a refusal; they never decide one.
Their ranges are fitted with the gate (training.fit_ood) and kept in its settings file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from model.run_dir import LookRange

BLACK_LEVEL = 10  # at or below: black (a border, a photographed screen's surround)
WHITE_LEVEL = 245  # at or above: pure white (burned-in text, drawn marks, over-exposure)
RANGE_QUANTILES = (0.005, 0.995)  # of the training X-rays' values: the range a film may span


def brightness(image: np.ndarray) -> float:
    """Mean grey level (0-255)."""
    return float(image.mean())


def contrast(image: np.ndarray) -> float:
    """Spread of the grey levels (99th minus 1st percentile): near 0 for a blank image. The
    gate's pixel check (model.ood) refuses on it too."""
    low, high = np.percentile(image, (1, 99))
    return float(high - low)


def black_share(image: np.ndarray) -> float:
    return float((image <= BLACK_LEVEL).mean())


def white_share(image: np.ndarray) -> float:
    return float((image >= WHITE_LEVEL).mean())


def fine_detail(image: np.ndarray) -> float:
    """Mean absolute Laplacian over the grey-level spread: text, drawn lines and screenshots
    are high, a blurred photograph of a film is low."""
    laplacian = cv2.Laplacian(image.astype(np.float32), cv2.CV_32F)
    return float(np.abs(laplacian).mean()) / max(contrast(image), 1.0)


def middle_brighter(image: np.ndarray) -> float:
    """Mean of the middle third of columns minus the outer thirds', over the middle rows, on a
    0-1 scale: on a frontal chest film the spine and heart are brighter than the lungs."""
    height, width = image.shape
    rows = image[height // 4: 3 * height // 4].astype(np.float32) / 255.0
    third = width // 3
    return float(rows[:, third:2 * third].mean()
                 - (rows[:, :third].mean() + rows[:, 2 * third:].mean()) / 2)


@dataclass(frozen=True)
class Look:
    """One measure, and what to tell a reader when a film lies below or above its range."""

    measure: Callable[[np.ndarray], float]
    below: str | None
    above: str | None


LOOKS: dict[str, Look] = {
    "brightness": Look(brightness, "it is much darker overall",
                       "it is much brighter overall"),
    "spread": Look(contrast, "its grey levels are flat, with little contrast", None),
    "black_share": Look(black_share, None,
                        "a large part of it is black (a border, a photographed film or screen, "
                        "or a cut-out)"),
    "white_share": Look(white_share, None,
                        "a large part of it is pure white (burned-in text, drawn marks or an "
                        "over-exposed film)"),
    "fine_detail": Look(fine_detail, "it is very blurred",
                        "it is full of sharp fine detail (text, drawn lines, a screenshot or a "
                        "drawing)"),
    "middle_brighter": Look(middle_brighter,
                            "its middle is not brighter than its sides, as the spine and heart "
                            "make a frontal chest film (an inverted image, a lateral view, a "
                            "rotated film or another body part)", None),
}
NOTHING_SIMPLE = ("its brightness, contrast, borders, white marks, fine detail and layout are "
                  "each within the training X-rays' range, so what differs is the picture as a "
                  "whole (for example another view or body part, or a film unlike those of any "
                  "training hospital)")


def measure(image: np.ndarray) -> dict[str, float]:
    """Every measure of one (S, S) uint8 model-size image."""
    return {name: look.measure(image) for name, look in LOOKS.items()}


def fit_ranges(images: np.ndarray) -> dict[str, LookRange]:
    """Each measure's range on the training X-rays (their 0.5th to 99.5th percentiles)."""
    values = [measure(image) for image in images]
    ranges = {}
    for name in LOOKS:
        low, high = np.quantile([row[name] for row in values], RANGE_QUANTILES)
        ranges[name] = LookRange(low=round(float(low), 4), high=round(float(high), 4))
    return ranges


def unusual(image: np.ndarray, ranges: Mapping[str, LookRange]) -> list[str]:
    """What a reader is told about one image: the measures outside their range that have
    words for that side, furthest outside (in range widths) first."""
    found = []
    for name, value in measure(image).items():
        if name not in ranges:
            continue
        bounds, look = ranges[name], LOOKS[name]
        width = max(bounds.high - bounds.low, 1e-6)
        if value < bounds.low and look.below:
            found.append(((bounds.low - value) / width, look.below))
        elif value > bounds.high and look.above:
            found.append(((value - bounds.high) / width, look.above))
    return [words for _, words in sorted(found, key=lambda item: -item[0])]


def describe(image: np.ndarray, ranges: Mapping[str, LookRange]) -> str:
    """One sentence naming what looked wrong, for a refusal's message."""
    found = unusual(image, ranges)
    if not found:
        return f"Nothing simple explains it: {NOTHING_SIMPLE}."
    return "Unlike the training X-rays, " + "; ".join(found) + "."
