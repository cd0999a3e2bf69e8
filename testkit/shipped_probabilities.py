"""The shipped model's calibrated probabilities on a fixed list of real val X-rays, as a file.

    python -m testkit.shipped_probabilities [--per-folder 6] [--out PATH]

The list: the first ``per_folder`` files (by name) of every class folder of every data root's
val split. The committed file (``EXPECTED_FILE``) was written by this script with the model and
code of commit 05e025e, when normalisation was still applied outside the model; the shipped
model's test checks that today's model and code give the same numbers, so a conversion, a
swapped model or a changed preprocessing path that moves them fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.decode import IMAGE_SUFFIXES, decode_file
from model.errors import ImageError
from model.predictor import DEFAULT_RUN_DIR, Predictor
from model.run_dir import read_json, write_json
from training.config import SHARED_DATA, TrainConfig

EXPECTED_FILE = (Path(__file__).resolve().parents[1] / "tests" / "fixtures"
                 / "shipped_val_probabilities.json")
PER_FOLDER = 6


def val_files(per_folder: int = PER_FOLDER) -> list[Path]:
    """The first files of each class folder of each default data root's val split."""
    files = []
    for root in TrainConfig().data:
        for folder in sorted(path for path in (root / "val").iterdir() if path.is_dir()):
            images = sorted(path for path in folder.iterdir()
                            if path.suffix.lower() in IMAGE_SUFFIXES)
            files += images[:per_folder]
    return files


def outcomes_by_name(predictor: Predictor, files: list[Path]) -> dict[str, list[float] | str]:
    """File name (relative to the shared data folder) -> calibrated probabilities, in the
    metadata's class order, or the refusal's message."""
    outcomes = predictor.outcomes([decode_file(path) for path in files])
    return {
        str(path.relative_to(SHARED_DATA)):
            str(outcome) if isinstance(outcome, ImageError) else [float(p) for p in outcome]
        for path, outcome in zip(files, outcomes, strict=True)
    }


def read_expected() -> dict:
    """The committed file: the model version it was made with, the classes, the outcomes."""
    return read_json(EXPECTED_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-folder", type=int, default=PER_FOLDER)
    parser.add_argument("--out", type=Path, default=EXPECTED_FILE)
    args = parser.parse_args()
    predictor = Predictor.load(DEFAULT_RUN_DIR)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"model_version": predictor.version, "classes": predictor.classes,
                          "outcomes": outcomes_by_name(predictor, val_files(args.per_folder))})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
