"""Validation metrics for a run, and `python -m training.evaluate` for any labelled folder.

    python -m training.evaluate --model RUN_DIR --data DIR [--split val] [--out FILE]
        [--recalibrate]

DIR holds `<split>/<CLASS>/*` (or `<CLASS>/*` directly). The metrics use the run's own
calibrated probabilities, computed through the same predictor the app uses.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.calibration import calibration_report, softmax
from training.artifacts import write_json
from training.data import DatasetError, find_classes, load_split, scan_split
from training.metrics import classification_metrics, format_summary

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger(__name__)


def calibrate_and_score(
    run_dir: Path, logits: np.ndarray, labels: np.ndarray, classes: list[str]
) -> dict:
    """Fit the temperature on these (validation) logits, write calibration.json and metrics.json."""
    calibration = calibration_report(logits, labels)
    write_json(run_dir / "calibration.json", calibration)
    metrics = classification_metrics(labels, softmax(logits, calibration["temperature"]), classes)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def _labelled_root(data_dir: Path, split: str) -> tuple[Path, str]:
    if (data_dir / split).is_dir():
        return data_dir, split
    return data_dir.parent, data_dir.name


def folder_logits(
    predictor: Predictor, data_dir: Path, split: str, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits for every readable image of a labelled folder, and the labels as
    indices into the model's classes."""
    root, split = _labelled_root(data_dir, split)
    classes = find_classes(root / split)
    unknown = set(classes) - set(predictor.classes)
    if unknown:
        raise DatasetError(f"{root / split} has classes the model does not know: {sorted(unknown)}")
    loaded = load_split(scan_split(root, split, classes), predictor.image_size, split)
    labels = np.array([predictor.classes.index(classes[label]) for label in loaded.labels])
    logits = np.concatenate([
        predictor.logits(np.stack([predictor.preprocess(gray)
                                   for gray in loaded.images[start:start + batch_size]]))
        for start in range(0, len(loaded.images), batch_size)
    ])
    return logits, labels


def evaluate_folder(run_dir: Path, data_dir: Path, split: str, recalibrate: bool = False) -> dict:
    """Metrics of the run's calibrated predictions on a labelled folder.

    With ``recalibrate`` the temperature is fitted anew on this folder (a site's own labelled
    X-rays, say) and the run's calibration.json and metrics.json are rewritten from it.
    """
    from model.predictor import Predictor  # TensorFlow-only; training itself stays backend-neutral

    predictor = Predictor.load(run_dir)
    logits, labels = folder_logits(predictor, data_dir, split)
    if recalibrate:
        return calibrate_and_score(run_dir, logits, labels, predictor.classes)
    return classification_metrics(labels, softmax(logits, predictor.temperature), predictor.classes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory")
    parser.add_argument("--data", type=Path, required=True, help="labelled folder")
    parser.add_argument("--split", default="val", help="sub-folder of DATA to use (default: val)")
    parser.add_argument("--out", type=Path, help="where to write the metrics JSON")
    parser.add_argument("--recalibrate", action="store_true",
                        help="fit the temperature on this folder and rewrite the run's "
                             "calibration.json and metrics.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        metrics = evaluate_folder(args.model, args.data, args.split, args.recalibrate)
    except DatasetError as error:
        parser.error(str(error))
    print(format_summary(metrics))
    if args.recalibrate:
        print(f"wrote {args.model / 'calibration.json'} and {args.model / 'metrics.json'}")
    if args.out or not args.recalibrate:
        out = args.out or args.model / f"metrics_{args.data.name}_{args.split}.json"
        write_json(out, metrics)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
