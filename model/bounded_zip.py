"""A .zip from the browser, read one member at a time within limits a zip bomb cannot pass.

The archive's headers are checked first (member count, total uncompressed size, compression
ratio), then every member is read in chunks and counted again as it expands, because headers
can lie. A member is only ever held once, and only while its batch is analysed. Every refusal
names the limit that stopped it.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from model.decode import IMAGE_SUFFIXES

CHUNK_BYTES = 1 << 20
RATIO_FLOOR_BYTES = 10_000_000  # below this, a high ratio is a small file's headers, not a bomb


class ZipSettings(Protocol):
    """The deployment settings a zip's limits come from (records.settings.Settings)."""

    zip_max_members: int
    zip_max_total_bytes: int
    zip_max_ratio: float


@dataclass(frozen=True)
class ZipLimits:
    """How much one uploaded archive may expand to; from the settings (``zip_*``)."""

    max_members: int = 2000
    max_member_bytes: int = 50_000_000
    max_total_bytes: int = 1_000_000_000
    max_ratio: float = 100.0

    @classmethod
    def from_settings(cls, settings: ZipSettings, max_member_bytes: int) -> ZipLimits:
        return cls(settings.zip_max_members, max_member_bytes, settings.zip_max_total_bytes,
                   settings.zip_max_ratio)


DEFAULT_ZIP_LIMITS = ZipLimits()


class ZipRefused(ValueError):
    """The archive (or what is left of it) will not be read; the message names the limit."""


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def image_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Members that may be images (by suffix, or DICOM files without one); no hidden files."""
    return [member for member in archive.infolist() if _is_image_member(member)]


def _is_image_member(member: zipfile.ZipInfo) -> bool:
    path = PurePosixPath(member.filename)
    hidden = any(part.startswith((".", "__MACOSX")) for part in path.parts)
    dicom_without_suffix = path.suffix == "" and not member.is_dir()
    return not member.is_dir() and not hidden and (
        path.suffix.lower() in IMAGE_SUFFIXES or dicom_without_suffix)


def check_headers(name: str, members: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse from the central directory alone: too many members, too large, too compressed."""
    if len(members) > limits.max_members:
        raise ZipRefused(f"{name} holds {len(members)} images; at most {limits.max_members} "
                         "per batch.")
    expanded = sum(member.file_size for member in members)
    if expanded > limits.max_total_bytes:
        raise ZipRefused(f"{name} would expand to {_size(expanded)}; the limit is "
                         f"{_size(limits.max_total_bytes)} per archive. Nothing in it was read.")
    packed = max(1, sum(member.compress_size for member in members))
    if expanded > RATIO_FLOOR_BYTES and expanded / packed > limits.max_ratio:
        raise ZipRefused(f"{name} is compressed {expanded / packed:.0f} to 1; the limit is "
                         f"{limits.max_ratio:.0f} to 1 (X-rays do not compress like that). "
                         "Nothing in it was read.")


def _read(archive: zipfile.ZipFile, member: zipfile.ZipInfo, label: str, limits: ZipLimits,
          budget: int) -> bytes:
    """The member's bytes, counted chunk by chunk against its limit, the archive's remaining
    budget and the ratio; ZipRefused when the archive must stop, ValueError for this member."""
    content = bytearray()
    with archive.open(member) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            content += chunk
            if len(content) > limits.max_member_bytes:
                raise ValueError(f"{label} expands beyond the {_size(limits.max_member_bytes)} "
                                 "limit per image; it was not read.")
            if len(content) > budget:
                raise ZipRefused(f"the archive expands beyond {_size(limits.max_total_bytes)}, "
                                 f"the limit per archive; reading stopped at {label}.")
            if (len(content) > RATIO_FLOOR_BYTES
                    and len(content) / max(1, member.compress_size) > limits.max_ratio):
                raise ZipRefused(f"{label} expands more than {limits.max_ratio:.0f} to 1, the "
                                 "limit (X-rays do not compress like that); reading stopped.")
    return bytes(content)


def iter_members(name: str, data: bytes, limits: ZipLimits) -> Iterator[tuple[str, bytes] | str]:
    """Each image member in turn as (label, bytes), or a message (str) about what was not read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = image_members(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
        yield f"{name} is not a readable .zip archive."
        return
    try:
        check_headers(name, members, limits)
    except ZipRefused as refusal:
        yield str(refusal)
        return
    if not members:
        yield f"{name} holds no PNG, JPEG, TIFF or DICOM files."
        return
    budget = limits.max_total_bytes
    with archive:
        for member in members:
            label = f"{name}/{member.filename}"
            if member.file_size > limits.max_member_bytes:
                yield (f"{label} is {_size(member.file_size)}, over the "
                       f"{_size(limits.max_member_bytes)} limit; it was not read.")
                continue
            try:
                content = _read(archive, member, label, limits, budget)
            except ZipRefused as refusal:
                yield f"{name}: {refusal}"
                return
            except ValueError as refusal:
                yield str(refusal)
                continue
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError):
                yield f"{label} could not be extracted (damaged or encrypted)."
                continue
            budget -= len(content)
            yield label, content
