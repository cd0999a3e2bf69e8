"""Validation metrics for a run, and `python -m training.evaluate` for any labelled folder.

    python -m training.evaluate --model RUN_DIR --data DIR [--data DIR ...] [--split val]
        [--out FILE] [--recalibrate] [--external DIR ...]

Each DIR holds `<split>/<LABEL>/*` (or `<LABEL>/*` directly); a label is one of the model's
classes or a label set (PNEUMONIA: bacterial or viral, scored as "any of these"). The metrics
use the run's own calibrated probabilities, computed through the same predictor the app uses,
and are broken down by source and age group (`subgroups`).

Each `--external DIR` (a population the model never trained on; layouts in training.external)
is scored through the gate, as a hospital would meet it, and written under the run's
metrics.json `external` key, one entry per folder name; the other keys are kept.
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
    RunFileError,
    write_calibration,
    write_json,
)
from model.run_metrics import merge_metrics_key, write_metrics
from training.config import TrainConfig
from training.data import (
    DatasetError,
    LabelSpace,
    LoadedSplit,
    find_classes,
    load_split,
    scan_split,
)
from training.external import format_external, read_external, score_external
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


def evaluate_external(
    run_dir: Path, folders: list[Path], sample: int | None = None
) -> dict[str, dict]:
    """{set name: figures} of the run on external folders, each through the gate; ``sample``
    scores at most that many images of each (spread evenly) for a quick look."""
    from model.predictor import Predictor  # TensorFlow-only, as above

    predictor = Predictor.load(run_dir)
    external = {}
    for folder in folders:
        images = read_external(folder).sample(sample)
        space = model_label_space(predictor.metadata, set(images.labels))
        log.info("external check %s: %d images", images.name, len(images.paths))
        external[images.name] = score_external(predictor, images, space)
    return external


def record_external(run_dir: Path, external: dict[str, dict]) -> None:
    """Add the sets to the run's metrics.json ``external`` key, keeping every other key (and
    the sets not scored this time)."""
    merge_metrics_key(run_dir, "external", external)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory")
    parser.add_argument("--data", type=Path, action="append", default=[],
                        help="labelled folder (repeat for several)")
    parser.add_argument("--split", default="val", help="sub-folder of DATA to use (default: val)")
    parser.add_argument("--out", type=Path, help="where to write the metrics JSON")
    parser.add_argument("--recalibrate", action="store_true",
                        help="fit the temperature on this folder and rewrite the run's "
                             f"{CALIBRATION_FILE} and {METRICS_FILE}")
    parser.add_argument("--external", type=Path, action="append", default=[],
                        help="external check folder (repeat for several): scored through the "
                             f"gate and added to the run's {METRICS_FILE} under 'external'")
    args = parser.parse_args(argv)
    if not args.data and not args.external:
        parser.error("give --data DIR, --external DIR, or both")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.data:
            report_folder(args, evaluate_folder(args.model, args.data, args.split,
                                                args.recalibrate))
        if args.external:
            external = evaluate_external(args.model, args.external)
            record_external(args.model, external)
            print(format_external(external))
            print(f"wrote the external checks into {args.model / METRICS_FILE}")
    except (DatasetError, RunFileError) as error:
        parser.error(str(error))
    return 0


def report_folder(args: argparse.Namespace, metrics: dict) -> None:
    """Print a labelled folder's metrics and write them where the flags say."""
    print(format_summary(metrics))
    if args.recalibrate:
        print(f"wrote {args.model / CALIBRATION_FILE} and {args.model / METRICS_FILE}")
    if args.out or not args.recalibrate:
        names = "+".join(data_dir.name for data_dir in args.data)
        out = args.out or args.model / f"metrics_{names}_{args.split}.json"
        write_json(out, metrics)
        print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
