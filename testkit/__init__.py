"""What tests and benchmarks share: generated inputs (bad files, DICOM, non-X-rays, synthetic
X-rays, factory-built models and reports), real servers, a live app, AppTest helpers."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
