"""Shared fixtures: where the real data lives, and a skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.config import CXR4_DATA

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cxr4_dir() -> Path:
    """The real labelled X-rays in ../shared; tests that need them skip when they are absent."""
    if not (CXR4_DATA / "val").is_dir():
        pytest.skip(f"real X-rays not found at {CXR4_DATA} (the shared data folder is absent)")
    return CXR4_DATA


@pytest.fixture(scope="session")
def pacs_archive(tmp_path_factory):
    """A real Orthanc (DICOMweb) holding one study of each variant in testkit.pacs_studies,
    made from real X-rays when ../shared is present; skipped when Orthanc is not installed."""
    from testkit.orthanc import missing_reason, running_orthanc
    from testkit.pacs_studies import PacsArchive, chest_studies, xray_images

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    studies = chest_studies(xray_images(CXR4_DATA, 8))
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as orthanc:
        for study in studies:
            for dicom in study.files:
                orthanc.store(dicom)
        yield PacsArchive(orthanc, studies)
