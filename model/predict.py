"""Classify X-ray files from the command line, one JSON object per line on stdout.

    python -m model.predict PATH [PATH ...] [--model RUN_DIR] [--batch-size N]

Folders are searched recursively for image files. Each line is either
{"file", "label", "probabilities", "model"} or, for a file that cannot be used or that the
model's out-of-distribution gate refuses (not a chest X-ray), {"file", "error"} saying why;
the run goes on. Exit 0 once every path was processed, 2 on usage errors.
Logs go to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from model.batch import Classified, classify
from model.decode import IMAGE_SUFFIXES, decode_file

if TYPE_CHECKING:
    from model.predictor import Predictor


def collect_files(paths: list[Path]) -> list[Path]:
    """Named files as given, folders expanded recursively to their image files, in order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(
                found for found in path.rglob("*")
                if found.is_file() and found.suffix.lower() in IMAGE_SUFFIXES
            ))
        else:
            files.append(path)
    return files


def predict_files(files: list[Path], predictor: Predictor, batch_size: int, out: TextIO) -> None:
    """Write one JSON line per file, in order: the prediction or the reason it was refused.

    The predictor decides (``admit``, then ``gated_probabilities``), exactly as for the app.
    """
    for outcome in classify(files, decode_file, predictor, batch_size):
        write_record({"file": str(outcome.item)}, outcome, predictor, out)


def write_record(where: dict, outcome: Classified, predictor: Predictor, out: TextIO,
                 **extra: object) -> None:
    """One JSON line: ``where`` (the file, or the PACS keys), then the result or the error."""
    if outcome.error is not None:
        record = {**where, "error": outcome.error}
    else:
        record = {**where, "label": outcome.label, "probabilities": outcome.probabilities,
                  "model": predictor.version}
    out.write(json.dumps({**record, **extra}) + "\n")
    out.flush()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.predict",
        description="Classify chest X-ray files; prints one JSON object per line.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="image files or folders (searched recursively)")
    parser.add_argument("--model", type=Path, metavar="RUN_DIR",
                        help="run directory (default: the shipped model in model/artifacts)")
    parser.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                        help="images per model call (default: 32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with contextlib.redirect_stdout(sys.stderr):  # nothing but JSON lines on stdout
        from model.predictor import DEFAULT_RUN_DIR, ModelLoadError, Predictor

        try:
            predictor = Predictor.load(args.model or DEFAULT_RUN_DIR)
        except ModelLoadError as error:
            parser.error(str(error))
    if not predictor.ood.enabled:
        print(f"warning: {predictor.ood.info['reason']}", file=sys.stderr)
    files = collect_files(args.paths)
    if not files:
        print("no image files found", file=sys.stderr)
    predict_files(files, predictor, args.batch_size, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
