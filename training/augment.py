"""Training-time augmentation on resized uint8 X-rays (between resize and normalisation)."""

from __future__ import annotations

import cv2
import numpy as np

from training.config import AugmentConfig


def augment(gray: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A random small rotation, zoom, shift, brightness and contrast change of one image."""
    size = gray.shape[0]
    angle = rng.uniform(-config.rotation_degrees, config.rotation_degrees)
    scale = 1.0 + rng.uniform(-config.zoom, config.zoom)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-config.shift, config.shift, size=2) * size
    warped = cv2.warpAffine(
        gray, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    if config.horizontal_flip and rng.random() < 0.5:
        warped = warped[:, ::-1]
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
    brightness = rng.uniform(-config.brightness, config.brightness) * 255.0
    mean = float(warped.mean())
    adjusted = (warped.astype(np.float32) - mean) * contrast + mean + brightness
    return np.clip(adjusted, 0, 255).astype(np.uint8)
