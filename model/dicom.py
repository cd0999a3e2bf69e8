"""DICOM to display grey levels, as a viewer shows them, exposing only non-identifying facts.

Pixels go through the modality LUT (rescale to physical units), then the VOI LUT or window
the modality chose for display, then MONOCHROME1 inversion. Only the acquisition facts in
``FACT_KEYWORDS`` are ever read from the header: patient and study identifiers are never
touched, so they cannot reach facts, messages or logs (pydicom's own validation warnings
echo a value only when that value is accessed).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    get_decoder,
)
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from model.errors import ImageError
from model.intensity import display_range, to_uint8
from model.limits import DecodeLimits, check_dimensions

DICOM_MAGIC = b"DICM"
DICOM_SUFFIXES = (".dcm", ".dicom")
# Header keyword -> display label: the only header values ever read for display.
FACT_KEYWORDS = {
    "Modality": "Modality",
    "ViewPosition": "View position",
    "BodyPartExamined": "Body part examined",
    "PhotometricInterpretation": "Photometric interpretation",
    "BitsStored": "Bits stored",
}
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
THREE_SAMPLE = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
COLOUR = THREE_SAMPLE + ("PALETTE COLOR",)
# JPEG start-of-frame markers (baseline to lossless, and JPEG-LS SOF55): they carry the size.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
J2K_SIZ = b"\xff\x4f\xff\x51"  # start of codestream followed by the image-size segment
# GDCM aborts the whole process (an uncaught C++ exception) on some corrupt JPEG 2000
# codestreams, found by bench/fuzz_decode.py; pylibjpeg and Pillow decode every transfer
# syntax it does and fail with Python exceptions, so GDCM is never used.
UNSAFE_PLUGINS = frozenset({"gdcm"})


@dataclass(frozen=True)
class PixelHeader:
    """The header fields that say what the pixel data hold."""

    rows: int
    columns: int
    frames: int
    samples: int
    photometric: str


def looks_like_dicom(data: bytes, name: str = "") -> bool:
    """A Part 10 file ('DICM' after the 128-byte preamble), or a file named as DICOM."""
    return data[128:132] == DICOM_MAGIC or name.lower().endswith(DICOM_SUFFIXES)


def decode_dicom(
    data: bytes, label: str, limits: DecodeLimits
) -> tuple[np.ndarray, dict[str, str], HeaderAge]:
    """(H, W) uint8 display pixels, safe acquisition facts and the patient's age group
    (``header_age``); ImageError when impossible."""
    has_preamble = data[128:132] == DICOM_MAGIC
    ds = _read(data, label, force=not has_preamble)
    if "PixelData" not in ds:
        if has_preamble or "SOPClassUID" in ds:
            raise ImageError(
                f"{label} is a DICOM object without an image (no pixel data): "
                "it may be a report, a structured document or a presentation state."
            )
        raise ImageError(f"{label} is named as DICOM but is not a readable DICOM file.")
    header = _pixel_header(ds, label)
    _check_header(header, label, limits)
    pixels = _decode_pixels(ds, header, label)
    gray = _to_display(pixels, ds, header, label)
    return gray, safe_facts(ds, header), header_age(ds)


ADULT_AGE_YEARS = 18
OLDEST_AGE_YEARS = 130  # older than anyone has lived: a typing error, not a patient
# PatientAge is given in whole units and a birth date to the day: within this they agree.
AGE_AGREEMENT_YEARS = 1.0
_AGE_UNITS_PER_YEAR = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}
_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
NOT_USED = "The DICOM header's age was not used ({}), so the model estimated the age group."


class _AgeProblem(ValueError):
    """Why a header's age cannot be used, in words that never repeat the age or a date."""


@dataclass(frozen=True)
class HeaderAge:
    """The age group a DICOM header gives ('adult', 'pediatric' or None), or why its age could
    not be used (``problem``, a sentence for the reader). Only the group leaves the header:
    the age and the dates are identifying and are neither kept nor shown."""

    group: str | None = None
    problem: str | None = None


def header_age(ds: Dataset) -> HeaderAge:
    """The group from PatientAge ("045Y", "010M") and from PatientBirthDate and the study's
    date; an impossible age, a birth date after the study, or the two disagreeing give a
    problem and no group, so that a typing error is pointed out rather than believed."""
    try:
        stated = _stated_years(_text(ds, "PatientAge").upper())
        from_birth = _years_from_birth(ds)
    except _AgeProblem as problem:
        return HeaderAge(problem=NOT_USED.format(problem))
    if stated is not None and from_birth is not None and (
            abs(stated - from_birth) > AGE_AGREEMENT_YEARS):
        return HeaderAge(problem=NOT_USED.format(
            "its patient age and its birth date disagree"))
    years = stated if stated is not None else from_birth
    if years is None:
        return HeaderAge()
    return HeaderAge("adult" if years >= ADULT_AGE_YEARS else "pediatric")


def _text(ds: Dataset, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "").strip()
    except Exception as error:  # a malformed value pydicom cannot convert tells nothing usable
        raise _AgeProblem(f"its {keyword} cannot be read") from error


def _stated_years(text: str) -> float | None:
    if not text:
        return None
    if not (len(text) == 4 and text[:3].isdigit() and text[3] in _AGE_UNITS_PER_YEAR):
        raise _AgeProblem("its patient age is not an age such as 045Y")
    return _possible(int(text[:3]) / _AGE_UNITS_PER_YEAR[text[3]], "its patient age")


def _years_from_birth(ds: Dataset) -> float | None:
    birth = _text(ds, "PatientBirthDate")
    if not birth:
        return None
    taken = next((date for date in (_text(ds, key) for key in _DATE_KEYWORDS) if date), "")
    try:
        born = datetime.strptime(birth[:8], "%Y%m%d")
        seen = datetime.strptime(taken[:8], "%Y%m%d") if taken else None
    except ValueError as error:
        raise _AgeProblem("its birth date or study date is not a date") from error
    if born > datetime.now():
        raise _AgeProblem("its birth date is in the future")
    if seen is None:
        return None
    if seen < born:
        raise _AgeProblem("its birth date is after the study's date")
    return _possible((seen - born).days / 365.25, "its birth date")


def _possible(years: float, what: str) -> float:
    if years > OLDEST_AGE_YEARS:
        raise _AgeProblem(f"{what} gives an age over {OLDEST_AGE_YEARS} years")
    return years


def safe_facts(ds: Dataset, header: PixelHeader) -> dict[str, str]:
    """Non-identifying acquisition facts as display strings (allow-list, never identifiers)."""
    facts = {"Size": f"{header.columns} × {header.rows} pixels"}
    for keyword, label in FACT_KEYWORDS.items():
        try:
            value = str(ds.get(keyword, "")).strip()
        except Exception:  # a malformed value is simply not shown
            continue
        if value:
            facts[label] = value[:64]
    return facts


def _read(data: bytes, label: str, *, force: bool) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=force)
    except Exception as error:  # pydicom's parser raises many types on hostile bytes
        raise ImageError(
            f"{label} is not a readable DICOM file: its header is damaged or incomplete."
        ) from error


def _pixel_header(ds: Dataset, label: str) -> PixelHeader:
    try:
        return PixelHeader(
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            frames=int(ds.get("NumberOfFrames") or 1),
            samples=int(ds.get("SamplesPerPixel") or 1),
            photometric=str(ds.PhotometricInterpretation).strip().upper(),
        )
    except Exception as error:  # missing or malformed image-description fields
        raise ImageError(
            f"{label} has a damaged image description (rows, columns or photometric "
            "interpretation missing or invalid)."
        ) from error


def _check_header(header: PixelHeader, label: str, limits: DecodeLimits) -> None:
    """Refuse before decoding: series, unsupported colour models, too large or too small."""
    if header.frames > 1:
        raise ImageError(
            f"{label} holds {header.frames} frames (a multi-frame series or cine loop); "
            "export the single radiograph you want analysed as its own image."
        )
    if header.photometric not in MONOCHROME + COLOUR:
        raise ImageError(
            f"{label} uses the photometric interpretation '{header.photometric[:32]}', "
            "which this reader does not support."
        )
    if header.samples != (3 if header.photometric in THREE_SAMPLE else 1):
        raise ImageError(
            f"{label} declares {header.samples} samples per pixel for "
            f"'{header.photometric}'; the header is damaged."
        )
    check_dimensions(header.columns, header.rows, label, limits)


def _transfer_syntax(ds: Dataset) -> UID:
    """The declared transfer syntax; for a bare dataset, the encoding pydicom read it with."""
    declared = ds.file_meta.get("TransferSyntaxUID")
    if declared:
        return UID(str(declared))  # str(): a corrupt file may hold a number or a list here
    implicit, little = ds.original_encoding
    if not little:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _decode_pixels(ds: Dataset, header: PixelHeader, label: str) -> np.ndarray:
    syntax = _transfer_syntax(ds)
    ds.file_meta.TransferSyntaxUID = syntax
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise ImageError(
            f"{label} stores its pixels as '{syntax.name[:80]}', "
            "which is not a still-image encoding this reader can decode."
        ) from error
    plugins = _safe_plugins(decoder)
    if not decoder.is_available or plugins == []:
        raise ImageError(
            f"{label} is compressed as '{syntax.name}', and no decoder for it is installed."
        )
    if syntax.is_compressed:
        _check_codestream_size(ds, header, label)
    try:
        pixels = _first_successful_decode(decoder, ds, plugins)
    except Exception as error:  # decoders raise many types on corrupt codestreams
        raise ImageError(
            f"{label}: the pixel data could not be decoded as '{syntax.name}'; the file "
            "is damaged or its data do not match its declared transfer syntax."
        ) from error
    expected = (header.rows, header.columns) + ((3,) if header.samples == 3 else ())
    if pixels.shape != expected:
        raise ImageError(
            f"{label}: the decoded pixels do not match the image size in the header; "
            "the file is damaged."
        )
    return pixels


def _safe_plugins(decoder: Decoder) -> list[str]:
    """Plugins to try in pydicom's order; [""] for the native (uncompressed, RLE) decoders."""
    if not decoder.available_plugins:
        return [""]
    return [name for name in decoder.available_plugins if name not in UNSAFE_PLUGINS]


def _first_successful_decode(decoder: Decoder, ds: Dataset, plugins: list[str]) -> np.ndarray:
    """The first frame from the first plugin that decodes it; the last failure otherwise."""
    for plugin in plugins[:-1]:
        try:
            return decoder.as_array(ds, index=0, decoding_plugin=plugin)[0]
        except Exception:  # the next plugin may read what this one cannot
            continue
    return decoder.as_array(ds, index=0, decoding_plugin=plugins[-1])[0]


def _check_codestream_size(ds: Dataset, header: PixelHeader, label: str) -> None:
    """Refuse a compressed frame larger than the header says, before a decoder allocates it."""
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    except Exception:  # unparseable encapsulation: the pixel decoder reports it as damaged
        return
    size = codestream_size(frame)
    if size is not None and (size[0] > header.columns or size[1] > header.rows):
        raise ImageError(
            f"{label}: the compressed image claims {size[0]} × {size[1]} pixels but the "
            f"header says {header.columns} × {header.rows}; the file is damaged or hostile."
        )


def codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG / JPEG-LS start-of-frame or a JPEG 2000 SIZ segment."""
    start = frame.find(J2K_SIZ, 0, 1024)
    if start >= 0 and len(frame) >= start + 24:
        fields = np.frombuffer(frame, dtype=">u4", count=4, offset=start + 8)
        return int(fields[0] - fields[2]), int(fields[1] - fields[3])
    if not frame.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(frame) and frame[position] == 0xFF:
        marker = frame[position + 1]
        if marker in JPEG_SOF_MARKERS:
            height = int.from_bytes(frame[position + 5 : position + 7], "big")
            width = int.from_bytes(frame[position + 7 : position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(frame[position + 2 : position + 4], "big")
    return None


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """Nominal range after the modality LUT (PS3.3 C.11.1), as pydicom's windowing uses it."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation") or 0) == 0:
        low, high = 0.0, 2.0**bits - 1
    else:
        low, high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = sorted(
            (low * float(slope) + float(intercept), high * float(slope) + float(intercept))
        )
    return low, high


def _monochrome_to_display(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT, then the VOI LUT or window if the file has one, then MONOCHROME1 inversion.

    Without a VOI, values are scaled by their nominal range (see model.intensity).
    """
    values = apply_modality_lut(pixels, ds)
    low, high = _modality_range(ds)
    if ds.get("VOILUTSequence"):
        values = apply_voi(values, ds)
        low, high = display_range(values, 0, 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_windowing(values, ds)
    else:
        low, high = display_range(values, low, high)
    gray = to_uint8(values, low, high)
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        gray = 255 - gray
    return gray


def _colour_to_display(pixels: np.ndarray, ds: Dataset, header: PixelHeader) -> np.ndarray:
    """Luminance (ITU-R 601, as Pillow's 'L') of RGB, YBR (converted by pydicom) or palette."""
    rgb = apply_color_lut(pixels, ds) if header.photometric == "PALETTE COLOR" else pixels
    luminance = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return to_uint8(luminance, 0, np.iinfo(rgb.dtype).max)


def _to_display(pixels: np.ndarray, ds: Dataset, header: PixelHeader, label: str) -> np.ndarray:
    try:
        if header.photometric in MONOCHROME:
            return _monochrome_to_display(pixels, ds)
        return _colour_to_display(pixels, ds, header)
    except Exception as error:  # malformed rescale, LUT or window values in the header
        raise ImageError(
            f"{label} has display settings (rescale, lookup table or window) "
            "that cannot be applied; the header is damaged."
        ) from error
