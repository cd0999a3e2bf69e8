"""The prediction CLI (`python -m model.predict`, i.e. pipeline.predict.main) run inside the test
process, with its stdout, stderr and exit status as a subprocess would give them.

Why: a subprocess pays TensorFlow's import and start-up, about 12 s of CPU a call on CI's two
cores, and the suite made some twenty such calls. The flags, lines and exit codes are the
same in process; the entry point itself (`python -m model.predict` through runpy) keeps its real
subprocess test in tests/unit/test_predict_cli.py, and the `--ray` tests keep theirs (Ray's driver).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path
from unittest import mock


def predict_cli(*args: str | Path, **environment: str) -> subprocess.CompletedProcess:
    """Run the CLI with these arguments (and environment variables set for the call)."""
    from pipeline.predict import main

    argv = [str(arg) for arg in args]
    out, err = io.StringIO(), io.StringIO()
    with (mock.patch.dict(os.environ, environment), contextlib.redirect_stdout(out),
          contextlib.redirect_stderr(err)):
        try:
            status = main(argv)
        except SystemExit as stopped:  # argparse's usage errors
            status = stopped.code if isinstance(stopped.code, int) else 1
    return subprocess.CompletedProcess(["model.predict", *argv], status, out.getvalue(),
                                       err.getvalue())
