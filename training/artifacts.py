"""Writing a run directory: the files the predictor, the app and the evaluation all read."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np


def write_json(path: Path, content) -> None:
    """Pretty JSON, NumPy scalars included, written whole."""
    path.write_text(json.dumps(content, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


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
