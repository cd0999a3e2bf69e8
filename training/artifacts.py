"""What a run records about how it was made: its version, time, commit and software.

The files themselves are written through model.run_dir.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np


def git_commit() -> str:
    """The commit the code ran from, or 'unknown' outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def software_versions() -> dict[str, str]:
    """The versions that matter to reproduce a run."""
    import cv2
    import PIL

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
    }


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def model_version(backbone: str, created_at: datetime, data_names: list[str]) -> str:
    """A version people can read and quote: data sets, backbone, training time."""
    return f"{'+'.join(data_names)}-{backbone}-{created_at:%Y%m%d-%H%M}"


def log_to(log_file: Path) -> None:
    """A training command's log: its file in the run directory (made if need be) and stderr,
    timestamped, so `tail -f` on a background run shows its progress."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in (logging.FileHandler(log_file), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
