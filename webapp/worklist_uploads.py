"""Worklist uploads: the browser's files, a .zip opened member by member, as images to analyse.

Nothing here raises: what cannot be read becomes a message for the page.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from model.decode import IMAGE_SUFFIXES
from model.limits import DEFAULT_LIMITS

MAX_ZIP_MEMBERS = 2000


@dataclass(frozen=True)
class Upload:
    """One image to analyse from the browser: its name (inside a .zip: archive/member) and bytes."""

    name: str
    data: bytes = field(repr=False)


def expand_uploads(files: Iterable[tuple[str, bytes]]) -> tuple[list[Upload], list[str]]:
    """Browser files -> images to analyse; a .zip gives its image and DICOM members.

    Returns (uploads, messages about what could not be read); nothing here raises.
    """
    uploads: list[Upload] = []
    messages: list[str] = []
    for name, data in files:
        if name.lower().endswith(".zip"):
            found, problems = _zip_members(name, data)
            uploads += found
            messages += problems
        else:
            uploads.append(Upload(name, data))
    return uploads, messages


def _zip_members(name: str, data: bytes) -> tuple[list[Upload], list[str]]:
    """Image members of a zip, each checked against the upload limit before it is read."""
    limit = DEFAULT_LIMITS.max_upload_bytes
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [member for member in archive.infolist() if _is_image_member(member)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
        return [], [f"{name} is not a readable .zip archive."]
    if len(members) > MAX_ZIP_MEMBERS:
        return [], [f"{name} holds {len(members)} images; at most {MAX_ZIP_MEMBERS} per batch."]
    uploads, problems = [], []
    with archive:
        for member in members:
            label = f"{name}/{member.filename}"
            if member.file_size > limit:
                problems.append(f"{label} is {member.file_size / 1e6:.0f} MB, over the "
                                f"{limit / 1e6:.0f} MB limit; it was not read.")
                continue
            try:
                with archive.open(member) as stream:
                    content = stream.read(limit + 1)  # a lying header cannot make this grow
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, ValueError):
                problems.append(f"{label} could not be extracted (damaged or encrypted).")
                continue
            uploads.append(Upload(label, content))
    if not uploads and not problems:
        problems.append(f"{name} holds no PNG, JPEG, TIFF or DICOM files.")
    return uploads, problems


def _is_image_member(member: zipfile.ZipInfo) -> bool:
    path = PurePosixPath(member.filename)
    hidden = any(part.startswith((".", "__MACOSX")) for part in path.parts)
    dicom_without_suffix = path.suffix == "" and not member.is_dir()
    return not member.is_dir() and not hidden and (
        path.suffix.lower() in IMAGE_SUFFIXES or dicom_without_suffix)
