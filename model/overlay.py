"""The Grad-CAM overlay a person reads: a colour heatmap blended onto the X-ray.

Apart from model.gradcam (which computes the map with TensorFlow) so that a process that only
shows results, such as the app as a model client, never imports TensorFlow.
"""

from __future__ import annotations

import cv2
import numpy as np


def overlay(gray: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """Blend a colour heatmap onto the grayscale X-ray: RGB uint8 at the original size.

    opacity 0 gives the X-ray alone (as RGB), 1 the colour map alone.
    """
    if gray.ndim != 2 or gray.shape != heatmap.shape:
        raise ValueError(
            f"heatmap {heatmap.shape} must match the 2-D grayscale image {gray.shape}"
        )
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    levels = np.round(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    base = np.repeat(gray[..., None], 3, axis=-1)
    blended = (1.0 - opacity) * base + opacity * colours.astype(np.float32)
    return np.round(blended).astype(np.uint8)
