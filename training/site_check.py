"""Do a site's films differ from the films the model was trained on? From unlabelled films.

    python -m training.site_check [--model RUN_DIR] PATH [PATH ...]

PATHs are image files, folders (searched recursively) or .zip archives (read within the app's
zip limits). Every film takes the product's one accept/refuse path (model.shift_films, as on
the Sites page); the accepted films' pooled features are compared, as a batch, with the training
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
from pathlib import Path
from typing import TYPE_CHECKING

from model.errors import ModelLoadError
from model.run_dir import DEFAULT_RUN_DIR, RunFileError
from model.shift import ShiftCheck, ShiftError, ShiftResult
from model.shift_films import accepted_features, path_loaders
from training.feature_bank import FeatureBank

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger("training.site_check")


def site_check(predictor: Predictor, bank: FeatureBank, paths: list[Path]) -> ShiftResult:
    """The verdict on the films under ``paths``; ShiftError when there are too few."""
    check = ShiftCheck.from_bank(bank)
    features, skipped = accepted_features(predictor, path_loaders(paths),
                                          lambda why: log.info("not used: %s", why))
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
