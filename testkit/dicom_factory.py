"""Build DICOM files in memory with pydicom, the way a modality would write them.

Tests use these to check DICOM decoding against the same pixels saved as PNG/JPEG, and to
check that patient identifiers never leak out of the decoder.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

# Distinctive values that must never appear outside the DICOM file itself.
FAKE_PATIENT: dict[str, str] = {
    "PatientName": "Quorravel^Zindabeth",
    "PatientID": "PID-7731-XQZ",
    "PatientBirthDate": "19370412",
    "AccessionNumber": "ACC-55190-KWT",
    "StudyDate": "20190827",
    "SeriesDate": "20190828",
    "InstitutionName": "Saint Ulvenbrook Infirmary",
    "ReferringPhysicianName": "Drovanska^Mirelle",
}


def stored_values(gray: np.ndarray, bits: int) -> np.ndarray:
    """Spread 8-bit grey levels over the full range of ``bits`` (8, 12 or 16) stored bits."""
    top = 2**bits - 1
    return np.round(gray.astype(np.float64) * (top / 255.0)).astype(
        np.uint8 if bits == 8 else np.uint16
    )


def make_dataset(
    gray: np.ndarray,
    *,
    bits: int = 16,
    monochrome1: bool = False,
    window: tuple[float, float] | None = None,
    patient: dict[str, str] | None = None,
) -> FileDataset:
    """A DX dataset holding ``gray`` (H, W) or (frames, H, W) uint8, uncompressed.

    With ``monochrome1`` the stored values are inverted, as CR/DX systems write them, so a
    correct reader must invert them back. ``window`` is (center, width) in stored units.
    """
    values = stored_values(gray, bits)
    if monochrome1:
        values = (2**bits - 1 - values.astype(np.int64)).astype(values.dtype)

    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=file_meta, preamble=b"\0" * 128)
    ds.SOPClassUID = file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    for keyword, value in (FAKE_PATIENT if patient is None else patient).items():
        setattr(ds, keyword, value)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = values.shape[-2:]
    if values.ndim == 3:
        ds.NumberOfFrames = values.shape[0]
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = values.tobytes()
    return ds


def to_bytes(ds: FileDataset) -> bytes:
    """Serialise a dataset as a DICOM Part 10 file (preamble, 'DICM', file meta)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_dicom(
    gray: np.ndarray,
    *,
    bits: int = 16,
    monochrome1: bool = False,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    window: tuple[float, float] | None = None,
    patient: dict[str, str] | None = None,
) -> bytes:
    """A DICOM file of ``gray``; compressed syntaxes (RLE, JPEG 2000 Lossless) via ds.compress."""
    ds = make_dataset(gray, bits=bits, monochrome1=monochrome1, window=window, patient=patient)
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    return to_bytes(ds)
