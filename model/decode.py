"""One decode path for every input (app, CLI, training): bytes -> 2-D uint8 grayscale.

DICOM goes through ``model.dicom``; PNG, JPEG (including CMYK), TIFF, BMP and GIF through
Pillow. Every failure, including hostile files, is an ``ImageError`` with a message for a
person; sizes are checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.dicom import DICOM_SUFFIXES, decode_dicom, looks_like_dicom
from model.errors import ImageError
from model.intensity import display_range, to_uint8
from model.limits import DEFAULT_LIMITS, DecodeLimits, check_dimensions, check_upload_size

# The suffixes of image files looked for in folders (training data, the CLI's folders).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", *DICOM_SUFFIXES})
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
WIDE_MODES = SIXTEEN_BIT_MODES + ("I", "F")


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image ready for preprocessing, with facts that are safe to show.

    ``facts`` holds only non-identifying display strings (size; for DICOM also modality,
    view position, body part, photometric interpretation, bits stored).
    """

    gray: np.ndarray  # (H, W) uint8
    source_format: str
    facts: dict[str, str] = field(default_factory=dict)
    # "adult" or "pediatric" from a DICOM header's age (model.dicom.header_age), else None;
    # the age itself is never kept.
    age_group: str | None = None
    # Why the header's age could not be used (impossible, contradictory), for the reader.
    age_problem: str | None = None


def decode_image(
    data: bytes, name: str = "", limits: DecodeLimits = DEFAULT_LIMITS
) -> DecodedImage:
    """Decode image bytes; raise ImageError with a readable message when that is impossible."""
    label = name or "the file"
    check_upload_size(len(data), label, limits)
    if looks_like_dicom(data, name):
        gray, facts, age = decode_dicom(data, label, limits)
        return DecodedImage(gray=gray, source_format="DICOM", facts=facts, age_group=age.group,
                            age_problem=age.problem)
    return _decode_with_pillow(data, label, limits)


def decode_file(path: str | Path, limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Read and decode a file from disk."""
    path = Path(path)
    try:
        check_upload_size(path.stat().st_size, path.name, limits)
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"{path.name} could not be read: {error.strerror}.") from error
    return decode_image(data, path.name, limits)


def _decode_with_pillow(data: bytes, label: str, limits: DecodeLimits) -> DecodedImage:
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{label} declares an image far larger than the "
            f"{limits.max_pixels / 1e6:.0f}-megapixel limit (a possible decompression "
            "bomb); it was not decoded."
        ) from error
    except UnidentifiedImageError as error:
        raise ImageError(_unreadable_message(data, label)) from error
    except Exception as error:  # Pillow's header parsers raise many types on hostile bytes
        raise ImageError(_damaged_message(label)) from error
    with image:
        source_format = image.format or "unknown"
        check_dimensions(image.width, image.height, label, limits)
        try:
            flat = _flatten(image)
        except Exception as error:  # truncated or corrupt pixel data, from any codec
            raise ImageError(_damaged_message(label)) from error
    gray = _to_uint8_gray(flat)
    height, width = gray.shape
    return DecodedImage(
        gray=gray, source_format=source_format, facts={"Size": f"{width} × {height} pixels"}
    )


def _flatten(image: Image.Image) -> Image.Image:
    """Decode, apply EXIF orientation, and reduce to one channel ('L', or a wide mode).

    Transparency is composited on black (the background of a radiograph); CMYK, palette and
    RGB become luminance.
    """
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_MODES:
        return image
    if image.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("L")


def _to_uint8_gray(image: Image.Image) -> np.ndarray:
    """8-bit stays as is; 16-bit is scaled by its bit depth (see model.intensity).

    Scaling by the bit depth rather than the image's min/max keeps the exposure the file
    records; only data using a small part of the range (12-bit values in a 16-bit file) are
    stretched. 32-bit integer and float images without a declared depth use their min/max.
    """
    if image.mode not in WIDE_MODES:
        return np.asarray(image, dtype=np.uint8)
    values = np.asarray(image)
    if image.mode in SIXTEEN_BIT_MODES or (values.min() >= 0 and values.max() <= 65535):
        low, high = display_range(values, 0, 65535)
    else:
        low, high = float(values.min()), float(values.max())
    return to_uint8(values, low, high)


def _damaged_message(label: str) -> str:
    return (
        f"{label} could not be decoded: it looks damaged or truncated "
        "(the file ends early or its data are corrupt); try exporting it again."
    )


def _unreadable_message(data: bytes, label: str) -> str:
    """Say what the file seems to be when it is not an image at all."""
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return (
            f"{label} is a web page (HTML), not an image: "
            "save or export the image itself, not the page that shows it."
        )
    if _is_text(head):
        return f"{label} is a text file, not an image."
    return f"{label} is not an image we can read (PNG, JPEG, TIFF or DICOM)."


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(character.isprintable() or character.isspace() for character in text)


def collect_files(paths: list[Path]) -> list[Path]:
    """Named files as given, folders expanded recursively to their image files, in order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(
                found for found in path.rglob("*")
                if found.is_file() and found.suffix.lower() in IMAGE_SUFFIXES
            ))
        else:
            files.append(path)
    return files
