"""Lung fields and the share of a heatmap's heat inside them: the mask, its thresholds and the
share, for every caller (CLI, Diagnose, Worklist, PDF, SR, benchmarks).

No TensorFlow here, so that the pages of an app that is a model server's client can use them;
the segmenter network that makes a mask is model.lungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from model.decode import DecodedImage

if TYPE_CHECKING:
    from model.classifier import Classifier

# Below this share of the image, no lung field was found (adult PA films: 0.15-0.46).
MIN_LUNG_FRACTION = 0.05
# Below this share of its heat inside the lungs, a map is flagged to the reader.
LOW_HEAT_IN_LUNGS = 0.5
# A connected region smaller than this share of the largest is noise, not a lung.
MIN_REGION_SHARE = 0.1

NO_LUNGS_MESSAGE = (
    "No lung field was found on this image (less than 5% of it looks like lung), so there is no "
    "lung outline and no share of attention inside the lungs. Check that it is a frontal chest "
    "X-ray; the finding above is not supported by a visible lung field.")
LOW_SHARE_WARNING = ("The model looked mostly outside the lungs for this finding: read it with "
                     "extra care.")


@dataclass(frozen=True)
class LungMask:
    """Lung fields on the model's (S, S) square; ``at_size`` undoes the stretch."""

    square: np.ndarray  # bool (S, S)

    @property
    def fraction(self) -> float:
        """The share of the image inside the lungs (the stretch does not change it)."""
        return float(self.square.mean())

    @property
    def found(self) -> bool:
        return self.fraction >= MIN_LUNG_FRACTION

    def at_size(self, shape: tuple[int, int]) -> np.ndarray:
        """bool (H, W): the mask on the original image."""
        height, width = shape
        return cv2.resize(self.square.astype(np.float32), (width, height),
                          interpolation=cv2.INTER_LINEAR) >= 0.5

    def png_levels(self, shape: tuple[int, int]) -> np.ndarray:
        """uint8 (H, W), 255 lung and 0 elsewhere: the mask as written to a file."""
        return np.where(self.at_size(shape), 255, 0).astype(np.uint8)

    def outline(self, shape: tuple[int, int], thickness: int = 2) -> np.ndarray:
        """bool (H, W): the lung fields' border, for drawing over the film."""
        mask = self.png_levels(shape)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        canvas = np.zeros_like(mask)
        cv2.drawContours(canvas, contours, -1, 255, max(1, thickness))
        return canvas > 0


def mask_from_probabilities(probabilities: np.ndarray, threshold: float = 0.5) -> LungMask:
    """Threshold, then keep the two largest regions (two lungs) unless tiny next to the largest:
    speckles outside the chest would otherwise draw outlines and take heat."""
    binary = (probabilities >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return LungMask(binary.astype(bool))
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][:2]
    keep = [index + 1 for index in order if areas[index] >= MIN_REGION_SHARE * areas[order[0]]]
    return LungMask(np.isin(labels, keep))


def hottest_point_in_lungs(heatmap: np.ndarray, lungs: np.ndarray) -> bool:
    """Whether the map's maximum falls inside a bool mask of the heatmap's own size."""
    return bool(lungs.flat[int(np.argmax(heatmap))])


def dice(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Dice overlap of two bool masks of one size; 1.0 when both are empty."""
    total = int(truth.sum()) + int(predicted.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(truth, predicted).sum()) / total


def heat_in_lungs(heatmap: np.ndarray, lungs: LungMask) -> float | None:
    """The share of the heatmap's heat inside the lungs, both on the model's square (the stretch
    scales every pixel's area alike); None for an all-zero map (no heat to share)."""
    size = lungs.square.shape
    heat = cv2.resize(heatmap.astype(np.float32), (size[1], size[0]),
                      interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0.0, None)
    total = float(heat.sum())
    if total <= 0.0:
        return None
    return float(heat[lungs.square].sum() / total)


@dataclass(frozen=True)
class Attention:
    """One film's lung fields and the share of one class's heat inside them."""

    lungs: LungMask
    class_name: str
    heat_in_lungs: float | None  # None: no lung field found, or an all-zero heatmap

    @property
    def low(self) -> bool:
        return self.heat_in_lungs is not None and self.heat_in_lungs < LOW_HEAT_IN_LUNGS


def share(lungs: LungMask, heatmap: np.ndarray, class_name: str) -> Attention:
    """The share of ``heatmap`` inside ``lungs``; none when no lung field was found."""
    value = heat_in_lungs(heatmap, lungs) if lungs.found else None
    return Attention(lungs, class_name, None if value is None else round(value, 4))


class Segmenter(Protocol):
    """What finds a film's lung fields (model.lungs.LungSegmenter), named without TensorFlow."""

    def segment(self, gray: np.ndarray) -> LungMask: ...


def explain_in_lungs(predictor: Classifier, segmenter: Segmenter, image: DecodedImage,
                     class_name: str | None = None, age_group: str | None = None,
                     ) -> tuple[np.ndarray, Attention]:
    """The class's heatmap (default: predicted) and its share inside the film's lung fields;
    ``age_group`` as for Predictor.explain."""
    explanation = predictor.explain(image, class_name, age_group)
    lungs = segmenter.segment(image.gray)
    return explanation.heatmap, share(lungs, explanation.heatmap, explanation.class_name)


def in_words(attention: Attention) -> str:
    """The share as a radiologist reads it."""
    if attention.heat_in_lungs is None:
        return NO_LUNGS_MESSAGE if not attention.lungs.found else (
            "The heatmap is empty: nothing in the image argued for this finding.")
    return f"{attention.heat_in_lungs:.0%} of the model's attention was inside the lungs."
