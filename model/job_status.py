"""``training.adapt --status FILE``: where a run of it stands, as JSON that a page reads instead
of its log.

    {"state": "running" | "done" | "refused" | "failed", "message": "...",
     "out": "/path/to/run" | null, "version": "..." | null, "at": "2026-12-08T10:00:00+00:00"}

``refused`` is adapt's own refusal (its message says why: too few films, an unknown label...);
``failed`` is a run that stopped without saying (written by whoever ran it). The file is
replaced atomically, so a reader sees the old state or the new one, never half of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RUNNING, DONE, REFUSED, FAILED = "running", "done", "refused", "failed"
FINAL_STATES = (DONE, REFUSED, FAILED)


@dataclass(frozen=True)
class AdaptStatus:
    """One state of a run, as the status file holds it."""

    state: str
    message: str
    out: Path | None
    version: str | None
    at: datetime

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def write_status(path: Path, state: str, message: str = "", out: Path | None = None,
                 version: str | None = None) -> None:
    """Replace the status file with this state, stamped now."""
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(json.dumps({
        "state": state, "message": message, "out": None if out is None else str(out),
        "version": version, "at": datetime.now(UTC).isoformat(timespec="seconds")}))
    os.replace(partial, path)


def read_status(path: Path) -> AdaptStatus | None:
    """The status file's state; None when there is none yet (or it cannot be read)."""
    try:
        saved = json.loads(path.read_text())
        return AdaptStatus(saved["state"], saved["message"],
                           None if saved["out"] is None else Path(saved["out"]),
                           saved["version"], datetime.fromisoformat(saved["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
