"""Validation metrics for a run, and `python -m training.evaluate` for any labelled folder.

    python -m training.evaluate --model RUN_DIR --data DIR [--data DIR ...] [--split val]
        [--out FILE] [--recalibrate]

Each DIR holds `<split>/<LABEL>/*` (or `<LABEL>/*` directly); a label is one of the model's
classes or a label set (PNEUMONIA: bacterial or viral, scored as "any of these"). The metrics
use the run's own calibrated probabilities, computed through the same predictor the app uses,
and are broken down by source and age group (`subgroups`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.calibration import calibration_report, softmax
from model.run_dir import (
    CALIBRATION_FILE,
    METRICS_FILE,
    Metadata,
    write_calibration,
    write_json,
    write_metrics,
)
from training.config import TrainConfig
from training.data import (
    DatasetError,
    LabelSpace,
    LoadedSplit,
    find_classes,
    load_split,
    scan_split,
)
from training.metrics import classification_metrics, format_summary

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger(__name__)


def calibrate_and_score(
    run_dir: Path, logits: np.ndarray, split: LoadedSplit, space: LabelSpace
) -> dict:
    """Fit the temperature on these (validation) logits; write the run's calibration and
    metrics."""
    calibration = calibration_report(logits, space.masks()[split.labels])
    write_calibration(run_dir, calibration)
    metrics = score(logits, calibration.temperature, split, space)
    write_metrics(run_dir, metrics)
    return metrics


def score(logits: np.ndarray, temperature: float, split: LoadedSplit, space: LabelSpace) -> dict:
    """Metrics of calibrated probabilities, with subgroups."""
    return classification_metrics(split.labels, softmax(logits, temperature), space.classes,
                                  space.set_map(), split.groups())


def _labelled_root(data_dir: Path, split: str) -> tuple[Path, str]:
    if (data_dir / split).is_dir():
        return data_dir, split
    return data_dir.parent, data_dir.name


def model_label_space(metadata: Metadata, folders: set[str]) -> LabelSpace:
    """The model's classes, and the label sets (its own, else the training default) that name
    a folder here; a folder that is neither is a DatasetError."""
    sets = metadata.label_sets or TrainConfig().label_set_map()
    classes = metadata.classes
    unknown = folders - set(classes) - set(sets)
    if unknown:
        raise DatasetError(f"labels the model does not know: {sorted(unknown)}")
    chosen = tuple((name, tuple(members)) for name, members in sets.items() if name in folders)
    for name, members in chosen:
        if set(members) - set(classes):
            raise DatasetError(f"label set {name} names classes the model lacks: {members}")
    return LabelSpace(classes, chosen)


def load_labelled(
    metadata: Metadata, image_size: int, data_dirs: list[Path], split: str
) -> tuple[LoadedSplit, LabelSpace]:
    """Every readable image of the labelled folders, labelled in the model's label space."""
    roots = [_labelled_root(data_dir, split) for data_dir in data_dirs]
    folders = set().union(*(find_classes(root / name) for root, name in roots))
    space = model_label_space(metadata, folders)
    pediatric = metadata.config.get("pediatric_sources",
                                    TrainConfig().pediatric_sources).split(",")
    samples = [sample for root, name in roots
               for sample in scan_split(root, name, space, pediatric)]
    return load_split(samples, image_size, split), space


def folder_logits(
    predictor: Predictor, data_dirs: list[Path], split: str, batch_size: int = 64
) -> tuple[np.ndarray, LoadedSplit, LabelSpace]:
    """The model's logits for every readable image of labelled folders, with the images'
    labels, sources and age groups."""
    loaded, space = load_labelled(predictor.metadata, predictor.image_size, data_dirs, split)
    logits = np.concatenate([
        predictor.logits(loaded.images[start:start + batch_size])
        for start in range(0, len(loaded.images), batch_size)
    ])
    return logits, loaded, space


def evaluate_folder(
    run_dir: Path, data_dirs: list[Path], split: str, recalibrate: bool = False
) -> dict:
    """Metrics of the run's calibrated predictions on labelled folders.

    With ``recalibrate`` the temperature is fitted anew on these folders (a site's own labelled
    X-rays, say) and the run's calibration and metrics are rewritten from them.
    """
    from model.predictor import Predictor  # TensorFlow-only; training itself stays backend-neutral

    predictor = Predictor.load(run_dir)
    logits, loaded, space = folder_logits(predictor, data_dirs, split)
    if recalibrate:
        return calibrate_and_score(run_dir, logits, loaded, space)
    return score(logits, predictor.temperature, loaded, space)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory")
    parser.add_argument("--data", type=Path, required=True, action="append",
                        help="labelled folder (repeat for several)")
    parser.add_argument("--split", default="val", help="sub-folder of DATA to use (default: val)")
    parser.add_argument("--out", type=Path, help="where to write the metrics JSON")
    parser.add_argument("--recalibrate", action="store_true",
                        help="fit the temperature on this folder and rewrite the run's "
                             f"{CALIBRATION_FILE} and {METRICS_FILE}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        metrics = evaluate_folder(args.model, args.data, args.split, args.recalibrate)
    except DatasetError as error:
        parser.error(str(error))
    print(format_summary(metrics))
    if args.recalibrate:
        print(f"wrote {args.model / CALIBRATION_FILE} and {args.model / METRICS_FILE}")
    if args.out or not args.recalibrate:
        names = "+".join(data_dir.name for data_dir in args.data)
        out = args.out or args.model / f"metrics_{names}_{args.split}.json"
        write_json(out, metrics)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
