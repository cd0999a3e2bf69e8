"""Worklist uploads: the browser's files, a .zip opened member by member, as images to analyse.

Nothing here raises: what cannot be read becomes a message for the page. A .zip is bounded
(model.bounded_zip): members, total size and compression ratio, checked from its headers and
again while each member is read.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from model.bounded_zip import DEFAULT_ZIP_LIMITS, ZipLimits, image_members, iter_members


@dataclass(frozen=True)
class Upload:
    """One image to analyse from the browser: its name (inside a .zip: archive/member) and bytes."""

    name: str
    data: bytes = field(repr=False)


def iter_uploads(files: Iterable[tuple[str, bytes]], limits: ZipLimits
                 ) -> Iterator[Upload | str]:
    """Browser files -> images to analyse, one at a time; a .zip gives its image and DICOM
    members as they are read (model.bounded_zip). A str is a message about what could not be
    read."""
    for name, data in files:
        if not name.lower().endswith(".zip"):
            yield Upload(name, data)
            continue
        for found in iter_members(name, data, limits):
            yield found if isinstance(found, str) else Upload(*found)


def expand_uploads(files: Iterable[tuple[str, bytes]], limits: ZipLimits = DEFAULT_ZIP_LIMITS
                   ) -> tuple[list[Upload], list[str]]:
    """Every image of a few small files at once: (uploads, messages); nothing here raises."""
    uploads: list[Upload] = []
    messages: list[str] = []
    for item in iter_uploads(files, limits):
        (messages if isinstance(item, str) else uploads).append(item)
    return uploads, messages


def expected_images(files: Iterable[tuple[str, bytes]]) -> int:
    """How many images the files hold, from the zips' headers (for the progress bar)."""
    count = 0
    for name, data in files:
        if not name.lower().endswith(".zip"):
            count += 1
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                count += len(image_members(archive))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
            continue
    return count


def upload_chunks(items: Iterable[Upload | str], chunk_images: int, chunk_bytes: int
                  ) -> Iterator[tuple[list[Upload], list[str]]]:
    """(uploads, messages) in chunks of at most ``chunk_images`` images or about
    ``chunk_bytes`` bytes: the next member is not read until this chunk is done."""
    uploads: list[Upload] = []
    messages: list[str] = []
    size = 0
    for item in items:
        if isinstance(item, str):
            messages.append(item)
            continue
        uploads.append(item)
        size += len(item.data)
        if len(uploads) >= chunk_images or size >= chunk_bytes:
            yield uploads, messages
            uploads, messages, size = [], [], 0
    if uploads or messages:
        yield uploads, messages
