"""The one preprocessing path, shared by training and inference.

A model must see the same pixels at inference as in training, so both call these
functions: decoded grayscale -> stretch resize -> 3 channels -> the backbone's normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

# The one path, as a run's metadata records it: stretch (no padding), area interpolation, the
# gray channel repeated to RGB; only the normalisation depends on the backbone.
RESIZE, INTERPOLATION, COLOR = "stretch", "area", "gray_to_rgb"
NORMALIZATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # EfficientNet-Lite0 as trained by its authors: (x - 127) / 128.
    "lite0": lambda x: (x - 127.0) / 128.0,
    # keras.applications ResNet50 ("caffe"): BGR channel means, no scaling.
    "caffe": lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32),
    # keras.applications InceptionV3 ("tf"): [-1, 1].
    "tf": lambda x: x / 127.5 - 1.0,
    # keras.applications DenseNet121 ("torch"): ImageNet mean and std on [0, 1].
    "torch": lambda x: (x / 255.0 - np.array([0.485, 0.456, 0.406], np.float32))
    / np.array([0.229, 0.224, 0.225], np.float32),
}


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


def to_model_input(resized: np.ndarray, normalization: str) -> np.ndarray:
    """uint8 (H, W) -> float32 (H, W, 3) in the backbone's expected range."""
    rgb = np.repeat(resized[..., None].astype(np.float32), 3, axis=-1)
    return np.ascontiguousarray(NORMALIZATIONS[normalization](rgb), dtype=np.float32)


def preprocess(gray: np.ndarray, image_size: int, normalization: str) -> np.ndarray:
    """Decoded grayscale image -> one model input, exactly as in training (without augmentation)."""
    return to_model_input(resize_gray(gray, image_size), normalization)
