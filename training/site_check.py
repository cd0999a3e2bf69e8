"""Do a site's films differ from the films the model was trained on? From unlabelled films.

    python -m training.site_check [--model RUN_DIR] PATH [PATH ...]

PATHs are image files, folders (searched recursively) or .zip archives (read within the app's
zip limits). Every film takes the product's one accept/refuse path (decode, ``admit``, the
feature check); the accepted films' pooled features are compared, as a batch, with the training
films of the run's feature bank (model.shift). At least model.shift.MIN_FILMS accepted films are
needed; with fewer, or without a feature bank, it says why on stderr and exits 1. Progress goes
to stderr; the last line of stdout is one JSON object: ``n``, ``shifted``, ``score``,
``threshold``, ``method`` and ``message`` (a sentence for an admin). Exit 0 on a verdict,
shifted or not; 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.bounded_zip import DEFAULT_ZIP_LIMITS, iter_members
from model.decode import DecodedImage, collect_files, decode_file, decode_image
from model.errors import ImageError, ModelLoadError
from model.run_dir import DEFAULT_RUN_DIR, RunFileError
from model.shift import ShiftCheck, ShiftError, ShiftResult
from training.feature_bank import FeatureBank

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger("training.site_check")
BATCH = 32
DECODE_THREADS = 4


def film_loaders(paths: list[Path]) -> Iterator[Callable[[], DecodedImage] | str]:
    """Each film as a loader (decoded on call), or a message about what could not be read."""
    for path in paths:
        if path.suffix.lower() == ".zip" and path.is_file():
            for member in iter_members(path.name, path.read_bytes(), DEFAULT_ZIP_LIMITS):
                if isinstance(member, str):
                    yield member
                else:
                    label, data = member
                    yield lambda data=data, label=label: decode_image(data, label)
        elif path.exists():
            for file in collect_files([path]):
                yield lambda file=file: decode_file(file)
        else:
            yield f"{path} does not exist"


def accepted_features(predictor: Predictor, paths: list[Path]) -> tuple[np.ndarray, int]:
    """(N, D) pooled features of the accepted films, and how many films were not used."""

    def admitted(loader: Callable[[], DecodedImage] | str) -> np.ndarray | str:
        if isinstance(loader, str):
            return loader
        try:
            return predictor.admit(loader())
        except ImageError as error:
            return str(error)

    inputs, skipped = [], 0
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for outcome in pool.map(admitted, film_loaders(paths)):
            if isinstance(outcome, str):
                log.info("not used: %s", outcome)
                skipped += 1
            else:
                inputs.append(outcome)
    parts = [predictor.gated_features(inputs[start:start + BATCH])
             for start in range(0, len(inputs), BATCH)]
    features = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return features, skipped + len(inputs) - len(features)


def site_check(predictor: Predictor, bank: FeatureBank, paths: list[Path]) -> ShiftResult:
    """The verdict on the films under ``paths``; ShiftError when there are too few."""
    check = ShiftCheck.from_bank(bank)
    features, skipped = accepted_features(predictor, paths)
    log.info("%d films accepted, %d not used", len(features), skipped)
    return check.check(features)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.site_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="image files, folders or .zip archives of the site's films")
    parser.add_argument("--model", type=Path, default=DEFAULT_RUN_DIR, metavar="RUN_DIR",
                        help="run directory (default: the shipped model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    from model.predictor import Predictor

    try:
        predictor = Predictor.load(args.model)
        bank = FeatureBank.load(args.model)
        result = site_check(predictor, bank, args.paths)
    except (ModelLoadError, RunFileError, ShiftError) as error:
        print(f"site check refused: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result.as_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
