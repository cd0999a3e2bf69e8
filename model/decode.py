"""One decode path for every input (app, CLI, training): bytes -> 2-D uint8 grayscale."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import ImageError


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image ready for preprocessing, with facts that are safe to show."""

    gray: np.ndarray  # (H, W) uint8
    source_format: str
    facts: dict[str, str] = field(default_factory=dict)


def _to_uint8_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return ((values - low) * scale).round().astype(np.uint8)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def decode_image(data: bytes, name: str = "") -> DecodedImage:
    """Decode image bytes; raise ImageError with a readable message when that is impossible."""
    label = name or "the file"
    if not data:
        raise ImageError(f"{label} is empty (0 bytes).")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            source_format = image.format or "unknown"
            image = ImageOps.exif_transpose(image)
            gray = _to_uint8_gray(image)
    except UnidentifiedImageError as error:
        raise ImageError(f"{label} is not an image we can read (PNG, JPEG).") from error
    except (OSError, ValueError) as error:
        raise ImageError(f"{label} could not be decoded: it looks damaged or truncated.") from error
    return DecodedImage(gray=gray, source_format=source_format)


def decode_file(path: str | Path) -> DecodedImage:
    """Read and decode a file from disk."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"{path.name} could not be read: {error.strerror}.") from error
    return decode_image(data, path.name)
