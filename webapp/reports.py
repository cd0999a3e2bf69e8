"""A run directory's reports, read exactly as training and evaluation wrote them.

The admin pages show these files and nothing else; a missing file is None (the page says
so), an unreadable one is a RunFileError naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class RunFileError(RuntimeError):
    """A report file exists but cannot be read; the message names it."""


@dataclass(frozen=True)
class RunReports:
    """What a run directory says about its model; None where a file is absent."""

    run_dir: Path
    metadata: dict | None
    metrics: dict | None
    history: list[dict] | None
    calibration: dict | None
    model_card: str | None


def _read_json(path: Path) -> dict | list | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFileError(f"{path} cannot be read: {error}") from error


def read_reports(run_dir: str | Path) -> RunReports:
    """Read metadata.json, metrics.json, history.json, calibration.json and MODEL_CARD.md."""
    run_dir = Path(run_dir)
    card_path = run_dir / "MODEL_CARD.md"
    try:
        model_card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
    except (OSError, UnicodeDecodeError) as error:
        raise RunFileError(f"{card_path} cannot be read: {error}") from error
    return RunReports(
        run_dir=run_dir,
        metadata=_read_json(run_dir / "metadata.json"),
        metrics=_read_json(run_dir / "metrics.json"),
        history=_read_json(run_dir / "history.json"),
        calibration=_read_json(run_dir / "calibration.json"),
        model_card=model_card,
    )
