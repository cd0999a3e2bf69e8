"""Augmentation of (film, lung mask) pairs for the lung segmenter.

The geometry moves image and mask together; it is wider than the classifier's because the
training films are thorax-cropped adults: zoomed out (films with neck and abdomen), squashed
or widened (children's shorter, wider chests, and films of any aspect stretched to a square),
rotated and shifted. The appearance (contrast curve, resolution, noise, borders, burned-in
text) is the classifier's own (training.augment.appearance), so both see the same sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.augment import appearance
from training.config import AugmentConfig


@dataclass(frozen=True)
class LungAugmentConfig:
    rotation_degrees: float = 12.0
    min_scale: float = 0.65  # zoom out to this (the lungs smaller in the frame) ...
    max_scale: float = 1.1  # ... or in to this
    aspect: float = 0.25  # width / height scaled by a factor in [1 - a, 1 + a]
    shift: float = 0.08  # fraction of the size, each axis
    gamma: float = 0.4
    contrast: float = 0.3
    brightness: float = 0.12
    min_resolution: float = 0.35
    noise: float = 8.0
    border: float = 0.06
    text_probability: float = 0.3

    def appearance(self) -> AugmentConfig:
        return AugmentConfig(gamma=self.gamma, contrast=self.contrast,
                             brightness=self.brightness, min_resolution=self.min_resolution,
                             noise=self.noise, border=self.border,
                             text_probability=self.text_probability)


def augment_pair(gray: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 config: LungAugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """One random variant of a square uint8 film and its float mask (same geometry)."""
    size = gray.shape[0]
    scale = rng.uniform(config.min_scale, config.max_scale)
    aspect = 1.0 + rng.uniform(-config.aspect, config.aspect)
    matrix = cv2.getRotationMatrix2D(
        (size / 2, size / 2), rng.uniform(-config.rotation_degrees, config.rotation_degrees), 1.0)
    matrix[:, :2] = matrix[:, :2] @ np.diag([scale * np.sqrt(aspect), scale / np.sqrt(aspect)])
    centre = np.array([size / 2, size / 2])
    matrix[:, 2] = centre - matrix[:, :2] @ centre + rng.uniform(-1, 1, 2) * config.shift * size
    # Outside the film: black (a detector edge) or the film's own edge grey (a body there).
    fill = 0.0 if rng.random() < 0.5 else float(np.median(np.r_[gray[0], gray[-1]]))
    image = cv2.warpAffine(gray.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    warped_mask = cv2.warpAffine(mask, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return appearance(image, rng, config.appearance()), warped_mask
