"""The share of a heatmap's heat inside the lung fields, and the thresholds of both, in a module
without TensorFlow so that the pages of an app that is a model server's client can use them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from model.lungs import LungMask

# Below this share of the image, no lung field was found (adult PA films: 0.15-0.46).
MIN_LUNG_FRACTION = 0.05
# Below this share of its heat inside the lungs, a map is flagged to the reader.
LOW_HEAT_IN_LUNGS = 0.5


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
