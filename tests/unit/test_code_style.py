"""The code stays ruff-clean (pyproject.toml's rules), so style drift fails CI, not review."""

from __future__ import annotations

import subprocess
import sys

from testkit import REPO_ROOT


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO_ROOT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
