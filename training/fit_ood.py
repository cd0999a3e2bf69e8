"""Fit the out-of-distribution gate of a run directory: writes its gate files into it.

    python -m training.fit_ood --model RUN_DIR --data DIR [--data DIR ...]
        [--refused-fraction 0.02]

Label means (one per class or label set) and one shared, Ledoit-Wolf-shrunk covariance of the
model's pooled features on every DIR/train; the distance limit is the lowest that refuses at
most refused-fraction of each source's DIR/val films, so val X-rays the Gaussians never saw
set it, and a source of unusual-looking films is not refused for being a small share of val.
The pixel limits are half the lowest contrast and neighbour correlation of any training X-ray.
The ranges of simple pixel measures over the training X-rays (model.image_looks) let a refusal
name what looked wrong.
The gate settings also hold the figures for the model card: the limits, the val refusal rate
(in-sample, cross-validated and by source) and the spread of distances.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

from model.image_looks import contrast, fit_ranges
from model.ood import (
    FeatureGaussians,
    OodGate,
    distance_threshold,
    neighbour_correlation,
)
from model.predictor import ModelLoadError, Predictor
from model.resampling import random_halves
from model.run_dir import OOD_ARRAYS_FILE, OOD_FILE, GateSettings, OodLimits
from training.data import DatasetError, LoadedSplit
from training.evaluate import load_labelled

log = logging.getLogger("training.fit_ood")

# Of each source's val films: publication figures (tight crops, arrows, ICU lines and tubes) are
# a small share of val, and a limit set on all val at once refused several times their share.
DEFAULT_REFUSED_FRACTION = 0.02
MIN_SOURCE_FILMS = 20  # a source with fewer val films cannot set a quantile: such are pooled
PIXEL_MARGIN = 0.5  # pixel limits at half the lowest value seen on a training X-ray
CROSS_VALIDATION_SPLITS = 50
QUANTILES = (0.5, 0.9, 0.99, 0.995, 1.0)
SUMMARY_KEYS = ("limits", "val_refused_fraction", "val_refused_by_distance_cross_validated",
                "distances", "pixels")


def pooled_features(predictor: Predictor, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, S, S) uint8 model-size images -> (N, D) features from the model's own forward pass."""
    return np.concatenate([
        predictor.logits_and_features(images[start:start + batch_size])[1]
        for start in range(0, len(images), batch_size)
    ])


def fit_gaussians(
    features: np.ndarray, labels: np.ndarray, n_classes: int
) -> tuple[FeatureGaussians, float]:
    """Class means and a shared covariance shrunk by Ledoit-Wolf; returns the shrinkage too.

    With 1280 features and a few thousand images the sample covariance is nearly singular;
    Ledoit-Wolf picks the shrinkage towards a scaled identity that minimises the expected error.
    """
    features = features.astype(np.float64)
    means = np.stack([features[labels == label].mean(axis=0) for label in range(n_classes)])
    estimator = LedoitWolf(assume_centered=True).fit(features - means[labels])
    return FeatureGaussians.from_covariance(means, estimator.covariance_), float(
        estimator.shrinkage_)


def cross_validated_refusal(distances: np.ndarray, sources: Sequence[str],
                            refused_fraction: float, seed: int = 0) -> float:
    """The refusal rate on unseen X-rays: limit set on one random half, measured on the other."""
    sources = np.asarray(sources)
    rates = []
    for fitted, held_out in random_halves(len(distances), CROSS_VALIDATION_SPLITS, seed):
        limit = source_balanced_threshold(distances[fitted], sources[fitted], refused_fraction)
        rates.append(float(np.mean(distances[held_out] > limit)))
    return float(np.mean(rates))


def source_balanced_threshold(distances: np.ndarray, sources: Sequence[str],
                              refused_fraction: float) -> float:
    """The lowest distance limit that refuses at most ``refused_fraction`` of every source's
    films (sources with fewer than MIN_SOURCE_FILMS films pooled into one group)."""
    sources = np.asarray(sources)
    names, counts = np.unique(sources, return_counts=True)
    groups = [sources == name for name in names[counts >= MIN_SOURCE_FILMS]]
    pooled = np.isin(sources, names[counts < MIN_SOURCE_FILMS])
    if pooled.any():
        groups.append(pooled)
    return max(distance_threshold(distances[group], refused_fraction) for group in groups)


def _refused_by_source(refused: np.ndarray, sources: Sequence[str]) -> dict[str, str]:
    sources = np.asarray(sources)
    return {name: f"{int(refused[sources == name].sum())}/{int((sources == name).sum())}"
            for name in np.unique(sources)}


def _pixel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([contrast(image) for image in images]),
            np.array([neighbour_correlation(image) for image in images]))


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{100 * q:g}": round(float(np.quantile(values, q)), 3) for q in QUANTILES}


def fit_gate(
    predictor: Predictor, train: LoadedSplit, val: LoadedSplit,
    refused_fraction: float = DEFAULT_REFUSED_FRACTION,
) -> OodGate:
    """The fitted gate, with the figures the model card reports in its ``info``.

    One Gaussian per label found in train (a class, or a label set such as adult pneumonia of
    unknown type), so each population the model was trained on has its own centre.
    """
    present, labels = np.unique(train.labels, return_inverse=True)
    if present.size < 2:
        raise DatasetError("the gate needs training images of at least two labels")
    train_features = pooled_features(predictor, train.images)
    gaussians, shrinkage = fit_gaussians(train_features, labels, present.size)
    train_distances = gaussians.distances(train_features)
    val_distances = gaussians.distances(pooled_features(predictor, val.images))
    val_sources = val.sources or ("one source",) * len(val.images)
    train_contrast, train_correlation = _pixel_statistics(train.images)
    val_contrast, val_correlation = _pixel_statistics(val.images)
    limits = OodLimits(
        max_distance=source_balanced_threshold(val_distances, val_sources, refused_fraction),
        min_contrast=PIXEL_MARGIN * float(train_contrast.min()),
        min_neighbour_correlation=PIXEL_MARGIN * float(train_correlation.min()),
    )
    refused_by_pixels = ((val_contrast < limits.min_contrast)
                         | (val_correlation < limits.min_neighbour_correlation))
    refused = refused_by_pixels | (val_distances > limits.max_distance)
    figures = {
        "method": "Mahalanobis distance to the nearest class mean of the pooled features "
                  "(shared Ledoit-Wolf covariance), after pixel checks for blank and noise",
        "model_version": predictor.version,
        "feature_size": int(gaussians.class_means.shape[1]),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fitted_on": {"train": len(train.images), "val": len(val.images)},
        "target_refused_fraction": refused_fraction,
        "target_per": "source (val films)",
        "shrinkage": round(shrinkage, 5),
        "val_refused_fraction": round(float(refused.mean()), 4),
        "val_refused_by_distance_cross_validated": round(
            cross_validated_refusal(val_distances, val_sources, refused_fraction), 4),
        "val_refused_by_pixels": int(refused_by_pixels.sum()),
        "val_refused_by_source": _refused_by_source(refused, val_sources),
        "distances": {"train": _quantiles(train_distances), "val": _quantiles(val_distances)},
        "pixels": {"train_min_contrast": float(train_contrast.min()),
                   "train_min_neighbour_correlation": round(float(train_correlation.min()), 4),
                   "pixel_margin": PIXEL_MARGIN},
    }
    return OodGate(gaussians, GateSettings(limits, figures, look_ranges=fit_ranges(train.images)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, metavar="RUN_DIR",
                        help=f"run directory; {OOD_FILE} and {OOD_ARRAYS_FILE} are written "
                             "into it")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", action="append",
                        help="dataset folder with train/<CLASS>/ and val/<CLASS>/ (repeat for "
                             "several)")
    parser.add_argument("--refused-fraction", type=float, default=DEFAULT_REFUSED_FRACTION,
                        help="share of each source's val X-rays the distance limit may refuse "
                             f"(default: {DEFAULT_REFUSED_FRACTION})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for data_dir in args.data:
        if not ((data_dir / "train").is_dir() and (data_dir / "val").is_dir()):
            parser.error(f"{data_dir} needs train/<CLASS>/ and val/<CLASS>/ folders")
    try:
        predictor = Predictor.load(args.model)
        train, val = (load_labelled(predictor.metadata, predictor.image_size, args.data, split)[0]
                      for split in ("train", "val"))
        gate = fit_gate(predictor, train, val, args.refused_fraction)
    except (ModelLoadError, DatasetError, ValueError) as error:
        parser.error(str(error))
    gate.save(args.model)
    saved = OodGate.load(args.model).info
    print(json.dumps({key: saved[key] for key in SUMMARY_KEYS}, indent=2))
    print(f"wrote {args.model / OOD_FILE} and {args.model / OOD_ARRAYS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
