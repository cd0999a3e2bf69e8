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
