"""A run directory's reports, read through model.run_dir exactly as training wrote them.

The admin pages show these files and nothing else; a missing file is None (the page says
so), an unreadable one is a RunFileError naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.run_dir import (
    Calibration,
    Metadata,
    if_present,
    read_calibration,
    read_history,
    read_metadata,
    read_model_card,
)
from model.run_metrics import Metrics, read_metrics


@dataclass(frozen=True)
class RunReports:
    """What a run directory says about its model; None where a file is absent."""

    run_dir: Path
    metadata: Metadata | None
    metrics: Metrics | None
    history: list[dict] | None
    calibration: Calibration | None
    model_card: str | None


def read_reports(run_dir: str | Path) -> RunReports:
    """The metadata, metrics, history, calibration and model card of a run directory."""
    run_dir = Path(run_dir)
    return RunReports(
        run_dir=run_dir,
        metadata=if_present(read_metadata, run_dir),
        metrics=if_present(read_metrics, run_dir),
        history=if_present(read_history, run_dir),
        calibration=if_present(read_calibration, run_dir),
        model_card=if_present(read_model_card, run_dir),
    )
