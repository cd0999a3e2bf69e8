"""Chest radiograph studies as a PACS holds them, made from real X-rays, with fake patients.

Each study has its own distinctive fake patient identifiers, so a test can check that none of
them reaches a page, a log or a file. The variants are those a hospital archive sends: 16-bit
MONOCHROME2, 12-bit MONOCHROME1 (CR), JPEG-compressed without a view position, lateral only,
lateral and PA in one study, and a study that is not a radiograph at all.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from testkit.dicom_factory import FAKE_PATIENT, make_dataset, to_bytes
from testkit.orthanc import Orthanc

XRAY_SIDE = 768  # real X-rays are shrunk to this longest side: small studies, fast tests


@dataclass(frozen=True)
class SyntheticStudy:
    """One study: its files, and what the code under test should make of it."""

    name: str  # the variant, for test ids
    study_uid: str
    study_date: str
    description: str
    files: list[bytes]
    frontal_sop_uids: list[str]  # the images to analyse; empty for a lateral-only study
    patient: dict[str, str] = field(default_factory=dict)


def fake_patient(index: int) -> dict[str, str]:
    """Distinctive identifiers for study ``index``; none may ever leave the archive."""
    return {
        **FAKE_PATIENT,
        "PatientName": f"Quorravel^Zindabeth{index:03d}",
        "PatientID": f"PID-7731-XQZ{index:03d}",
        "PatientBirthDate": f"1937{1 + index % 12:02d}12",
        "AccessionNumber": f"ACC-55190-KWT{index:03d}",
    }


def identifiers(studies: list[SyntheticStudy]) -> set[str]:
    """Every patient identifier value in these studies (what must never be shown)."""
    keys = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
            "InstitutionName", "ReferringPhysicianName")
    values = {study.patient[key] for study in studies for key in keys}
    return values | {value.replace("^", " ") for value in values}


def xray_images(data_root: Path | None, count: int) -> list[np.ndarray]:
    """``count`` grey X-rays: real ones from ``data_root/val`` when present, else synthetic."""
    files = sorted(data_root.glob("val/*/*.jpg")) if data_root and data_root.is_dir() else []
    if files:
        chosen = [files[index * len(files) // count] for index in range(count)]
        return [_shrunk(np.asarray(Image.open(path).convert("L"))) for path in chosen]
    rng = np.random.default_rng(13)
    return [_synthetic_chest(rng) for _ in range(count)]


def _shrunk(gray: np.ndarray) -> np.ndarray:
    scale = XRAY_SIDE / max(gray.shape)
    if scale >= 1:
        return gray
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.LANCZOS))


def _synthetic_chest(rng: np.random.Generator, side: int = 512) -> np.ndarray:
    """Two dark lung fields in a bright body, with noise: enough to exercise the path."""
    rows, columns = np.mgrid[0:side, 0:side] / side
    body = 200 - 120 * (((columns - 0.5) / 0.45) ** 2 + ((rows - 0.55) / 0.5) ** 2 > 1)
    lungs = sum(((columns - x) / 0.16) ** 2 + ((rows - 0.5) / 0.3) ** 2 < 1 for x in (0.32, 0.68))
    image = body - 110 * lungs + rng.normal(0, 8, (side, side))
    return np.clip(image, 0, 255).astype(np.uint8)


def _image(gray: np.ndarray, study_uid: str, series_uid: str, patient: dict[str, str], *,
           modality: str = "DX", view: str | None = "PA", bits: int = 16,
           monochrome1: bool = False, jpeg: bool = False, instance: int = 1) -> FileDataset:
    ds = make_dataset(gray, bits=8 if jpeg else bits, monochrome1=monochrome1, patient=patient)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = modality
    ds.InstanceNumber, ds.SeriesNumber = instance, instance
    if view is None:
        del ds.ViewPosition
    else:
        ds.ViewPosition = view
    if jpeg:
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, format="JPEG", quality=92)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    return ds


def _study(name: str, index: int, description: str, images: list[dict],
           xrays: list[np.ndarray]) -> SyntheticStudy:
    """A study of one series per image, each image a dict of ``_image`` options."""
    study_uid = generate_uid()
    patient = {**fake_patient(index), "StudyDate": f"2024{1 + index % 12:02d}{1 + index % 28:02d}"}
    datasets = []
    for number, options in enumerate(images, start=1):
        ds = _image(xrays[(index + number) % len(xrays)], study_uid, generate_uid(), patient,
                    instance=number, **options)
        ds.StudyDescription = description
        ds.StudyTime, ds.StudyID = "101500", f"S{index}"
        datasets.append(ds)
    frontal = [ds.SOPInstanceUID for ds in datasets
               if ds.Modality in ("CR", "DX") and ds.get("ViewPosition", "PA") in ("PA", "AP")]
    return SyntheticStudy(name, study_uid, patient["StudyDate"], description,
                          [to_bytes(ds) for ds in datasets], frontal, patient)


def chest_studies(xrays: list[np.ndarray]) -> list[SyntheticStudy]:
    """One study of each variant, dated month by month through 2024 (index = month - 1)."""
    return [
        _study("dx-16bit-pa", 0, "CHEST PA", [{}], xrays),
        _study("cr-monochrome1-ap", 1, "CHEST AP PORTABLE",
               [{"modality": "CR", "view": "AP", "bits": 12, "monochrome1": True}], xrays),
        _study("dx-jpeg-no-view", 2, "THORAX", [{"view": None, "jpeg": True}], xrays),
        _study("lateral-only", 3, "CHEST LATERAL", [{"view": "LL"}], xrays),
        _study("lateral-and-pa", 4, "CHEST 2 VIEWS", [{"view": "LL"}, {"view": "PA"}], xrays),
        _study("not-a-radiograph", 5, "BRAIN MRI", [{"modality": "MR", "view": None}], xrays),
    ]


def bulk_studies(count: int, xrays: list[np.ndarray]) -> list[SyntheticStudy]:
    """``count`` single-image frontal studies (16-bit DX PA and 12-bit MONOCHROME1 CR AP)."""
    variants = [{}, {"modality": "CR", "view": "AP", "bits": 12, "monochrome1": True}]
    return [_study(f"bulk-{index}", index, "CHEST", [variants[index % 2]], xrays)
            for index in range(count)]


@dataclass(frozen=True)
class PacsArchive:
    """A running archive and the studies stored in it."""

    orthanc: Orthanc
    studies: list[SyntheticStudy]

    def environment(self, **overrides: str) -> dict[str, str]:
        """The CXR_PACS_* variables that point the app or the CLI at this archive."""
        return {"CXR_PACS_URL": self.orthanc.dicomweb_url, "CXR_PACS_USER": self.orthanc.user,
                "CXR_PACS_PASSWORD": self.orthanc.password, "CXR_PACS_BACKOFF_S": "0.05",
                **overrides}

    def study(self, name: str) -> SyntheticStudy:
        return next(study for study in self.studies if study.name == name)


SECRET = "test-key-secret"  # the opaque keys' secret the PACS tests set


def run_pacs_cli(archive, *args: str | Path, **environment: str) -> subprocess.CompletedProcess:
    """`python -m model.predict --pacs` against a running test archive (in this process)."""
    from testkit.predict_cli import predict_cli

    return predict_cli("--pacs", archive.orthanc.dicomweb_url, *args,
                       **archive.environment(CXR_PACS_KEY_SECRET=SECRET, **environment))
