"""The code stays ruff-clean (pyproject.toml's rules), so style drift fails CI, not review."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testkit import REPO_ROOT


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO_ROOT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_benches_and_tests_import_as_packages_without_editing_sys_path():
    """bench/ runs as `python -m bench.NAME` and tests as a package: a sys.path edit would let a
    module import something the layer contracts cannot see."""
    edits = [str(path.relative_to(REPO_ROOT))
             for folder in ("bench", "tests", "testkit")
             for path in (REPO_ROOT / folder).rglob("*.py")
             if path != Path(__file__) and "sys.path." in path.read_text(encoding="utf-8")]
    assert edits == []
