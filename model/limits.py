"""Limits on what the decoder accepts: one place, shared by the app, the CLI and training."""

from __future__ import annotations

from dataclasses import dataclass

from model.errors import ImageError


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds checked before any pixel is decoded, so a hostile file cannot exhaust memory.

    ``max_pixels`` guards against decompression bombs (a few KB claiming gigapixels);
    ``min_side`` refuses icons and thumbnails too small to hold a radiograph.
    """

    max_upload_bytes: int = 50_000_000
    max_pixels: int = 50_000_000
    min_side: int = 32


DEFAULT_LIMITS = DecodeLimits()


def check_dimensions(width: int, height: int, label: str, limits: DecodeLimits) -> None:
    """Refuse images too large to decode safely or too small to be a radiograph."""
    if width * height > limits.max_pixels:
        raise ImageError(
            f"{label} is {width} × {height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"more than the {limits.max_pixels / 1e6:.0f}-megapixel limit; "
            "it was not decoded (downsample it before uploading)."
        )
    if min(width, height) < limits.min_side:
        raise ImageError(
            f"{label} is only {width} × {height} pixels: too small to be a radiograph "
            f"(at least {limits.min_side} pixels on each side)."
        )


def check_upload_size(size: int, label: str, limits: DecodeLimits) -> None:
    """Refuse empty files and files over the upload limit before parsing (or reading) them."""
    if size == 0:
        raise ImageError(f"{label} is empty (0 bytes): the upload or export did not complete.")
    if size > limits.max_upload_bytes:
        raise ImageError(
            f"{label} is {size / 1e6:.1f} MB, more than the "
            f"{limits.max_upload_bytes / 1e6:.0f} MB upload limit."
        )
