"""The layers hold: `lint-imports` checks pyproject.toml's contracts (views over webapp over
pipeline and serving over pacs and records over model; training over model and records only;
no SQLAlchemy in the pages; no TensorFlow where the app as a model server's client, pacs and
records run), so an import that crosses a layer fails CI, not review."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit import REPO_ROOT


def test_lint_imports_keeps_every_contract():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-1000:]
    assert "0 broken" in result.stdout
