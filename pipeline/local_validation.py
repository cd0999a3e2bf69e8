"""Validate only: ``python -m training.local_validation`` run on a site's films and waited for
(the Sites page), its JSON answer read back. A process of its own, as an adaptation is: the app
never imports training, and the model it loads is freed when it ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from records.settings import REPO_ROOT

TIMEOUT_SECONDS = 900


class ValidationFailed(RuntimeError):
    """The films could not be validated on; the message is for an admin."""


def run_validation(run_dir: Path, films_dir: Path, timeout_seconds: float = TIMEOUT_SECONDS
                   ) -> dict:
    """training.local_validation's answer (model, n, labels, figures) for the run and films;
    ValidationFailed with its refusal, or with why it gave none."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "training.local_validation", "--model", str(run_dir),
             "--site", str(films_dir)], capture_output=True, text=True, cwd=REPO_ROOT,
            env=environment, timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        raise ValidationFailed(f"The validation took longer than {timeout_seconds:.0f} s and "
                               "was stopped; try fewer films, or run python -m "
                               "training.local_validation on the server.") from None
    lines = completed.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        tail = " ".join(completed.stderr.strip().splitlines()[-3:])
        raise ValidationFailed(f"The validation stopped (exit code {completed.returncode}) "
                               f"without an answer: {tail or 'no message'}")
    if "error" in answer:
        raise ValidationFailed(f"These films cannot be validated on: {answer['error']}")
    return answer
