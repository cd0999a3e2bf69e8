"""Training-time augmentation on resized uint8 X-rays (between resize and normalisation).

Beyond small geometric and photometric changes, it randomises what tells one hospital's films
from another's rather than one disease from another: the contrast curve, resolution and
sharpness, noise, borders and burned-in text or side markers. A model that cannot rely on those
has to read the lungs.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

from training.config import AugmentConfig

# Words of the kind scanners and technicians burn into films ("L", "AP", "PORTABLE", Spanish
# "DCHA"/"PORTATIL", Italian "A LETTO"), plus random ones, so that text means nothing.
MARKER_WORDS = ("L", "R", "D", "I", "AP", "PA", "DCHA", "IZDA", "PORTABLE", "PORTATIL",
                "SUPINE", "ERECT", "A LETTO", "UPRIGHT", "1", "2", "A", "B")
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN)


def augment(gray: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One random variant of a square uint8 image, in the order a film is made and stored."""
    return appearance(_geometry(gray, rng, config), rng, config)


def appearance(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """What differs between scanners and sites, on a float image already in its geometry: tone,
    resolution, borders, burned-in text, noise (the lung segmenter's augmentation reuses it)."""
    image = _tone(image, rng, config)
    image = _resolution(image, rng, config.min_resolution)
    image = np.round(_borders(image, rng, config.border)).astype(np.uint8)
    if rng.random() < config.text_probability:
        _burn_text(image, rng)
    if config.noise > 0:
        sigma = rng.uniform(0, config.noise)
        image = np.round(np.clip(image + rng.normal(0, sigma, image.shape), 0, 255))
    return image.astype(np.uint8)


def _geometry(gray: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A small rotation, zoom and shift (and a flip, only where configured)."""
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
    return warped.astype(np.float32)


def _tone(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Gamma (each scanner's contrast curve), then contrast and brightness about the mean."""
    gamma = 1.0 + rng.uniform(-config.gamma, config.gamma)
    image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** gamma
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
    brightness = rng.uniform(-config.brightness, config.brightness) * 255.0
    mean = float(image.mean())
    return np.clip((image - mean) * contrast + mean + brightness, 0, 255)


def _resolution(image: np.ndarray, rng: np.random.Generator, min_factor: float) -> np.ndarray:
    """Down- and up-sample: sources were stored at 224, 320 px or more, sharp or soft."""
    factor = rng.uniform(min_factor, 1.0)
    size = image.shape[0]
    small = max(8, round(size * factor))
    if small >= size:
        return image
    reduced = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (size, size), interpolation=cv2.INTER_LINEAR)


def _borders(image: np.ndarray, rng: np.random.Generator, max_fraction: float) -> np.ndarray:
    """Each side, with probability 1/4, covered by a black or white band (collimation, frames)."""
    size = image.shape[0]
    image = image.copy()
    for side in range(4):
        if max_fraction <= 0 or rng.random() >= 0.25:
            continue
        width = int(rng.uniform(0.02, max_fraction) * size)
        value = 0.0 if rng.random() < 0.7 else 255.0
        band = np.rot90(image, side)  # a view: writing its top rows writes one side of image
        band[:width] = value
    return image


def _burn_text(image: np.ndarray, rng: np.random.Generator) -> None:
    """Burn one to three markers or random words, white or black, anywhere into a uint8 film."""
    size = image.shape[0]
    for _ in range(rng.integers(1, 4)):
        if rng.random() < 0.7:
            text = str(rng.choice(MARKER_WORDS))
        else:
            text = "".join(rng.choice(list(string.ascii_uppercase + string.digits),
                                      size=rng.integers(2, 9)))
        scale = rng.uniform(0.25, 0.7) * size / 224
        origin = (int(rng.uniform(0, 0.8) * size), int(rng.uniform(0.08, 1.0) * size))
        colour = 255 if rng.random() < 0.75 else 0
        cv2.putText(image, text, origin, FONTS[rng.integers(len(FONTS))], scale, colour,
                    max(1, round(scale * 2)), cv2.LINE_AA)
