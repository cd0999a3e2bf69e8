"""Shared fixtures: where the real data lives, and a skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "cxr4"


@pytest.fixture(scope="session")
def cxr4_dir() -> Path:
    """The real labelled X-rays in ../shared; tests that need them skip when they are absent."""
    if not (SHARED_DATA / "val").is_dir():
        pytest.skip(f"real X-rays not found at {SHARED_DATA} (the shared data folder is absent)")
    return SHARED_DATA
