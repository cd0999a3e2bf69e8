"""The one preprocessing path, shared by training and inference.

A model must see the same pixels at inference as in training, so both call ``resize_gray``:
decoded grayscale -> stretch resize, (S, S) uint8. That grey image is the model's input; the
model itself repeats it to three channels and normalises it as its backbone expects
(model.normalization, its first layer).
"""

from __future__ import annotations

import cv2
import numpy as np

# The one path, as a run's metadata records it: stretch (no padding), area interpolation.
RESIZE, INTERPOLATION = "stretch", "area"


def resize_gray(gray: np.ndarray, image_size: int) -> np.ndarray:
    """Stretch a 2-D uint8 image to ``image_size`` squared, never padding.

    The data's Kermany images were stretched to a square at the source, so every image
    gets the same stretch; padding would mark the other sources (see the data README).
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {gray.dtype} with shape {gray.shape}")
    if gray.shape == (image_size, image_size):
        return gray
    return cv2.resize(gray, (image_size, image_size), interpolation=cv2.INTER_AREA)
