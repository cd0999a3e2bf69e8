"""Map stored intensities (8 to 16 bits, DICOM units) to 8-bit display grey levels."""

from __future__ import annotations

import numpy as np

# Data spanning less than this fraction of their nominal range are stretched to their own
# min/max: e.g. 12-bit detector values written into a 16-bit PNG or DICOM container, which
# scaled by the container's depth would show as a black image (at most 64 of 255 grey levels).
SMALL_PART_OF_RANGE = 1 / 4


def display_range(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The nominal [low, high] range, or the data's own min/max when they use a small part of it.

    Scaling by the nominal bit depth keeps the brightness the file declares (a dark image stays
    dark, and 8-bit levels stored as 16-bit come back exactly); stretching is kept for data
    that would otherwise come out nearly black.
    """
    data_low, data_high = float(values.min()), float(values.max())
    if data_high > data_low and (data_high - data_low) < (high - low) * SMALL_PART_OF_RANGE:
        return data_low, data_high
    return low, high


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linearly map [low, high] to [0, 255], clipping outside values."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
