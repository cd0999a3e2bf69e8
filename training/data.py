"""Reading a class-folder dataset: samples, patient-grouped splits, class weights, pixels in memory.

Layout: `DIR/train/<CLASS>/*`, optional `DIR/val/<CLASS>/*`, optional `DIR/manifest.csv`
with `file` (relative to DIR) and `patient_id` columns. Without `val/`, train is split by
patient so that no patient's images land on both sides.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.decode import decode_file
from model.errors import ImageError
from model.labels import CLASS_NAMES
from model.preprocess import resize_gray

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff"})


class DatasetError(ValueError):
    """The data folder cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    patient_id: str


@dataclass(frozen=True)
class LoadedSplit:
    """Images decoded and resized once (uint8, N x S x S), with their labels."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[Path]

    def counts(self, classes: list[str]) -> dict[str, int]:
        found = Counter(self.labels.tolist())
        return {name: int(found[index]) for index, name in enumerate(classes)}


def find_classes(split_dir: Path) -> list[str]:
    """Class folder names: the product's order when they are its classes, else sorted."""
    names = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
    if not names:
        raise DatasetError(f"{split_dir} has no class folders (expected {split_dir}/<CLASS>/*.jpg)")
    if set(names) == set(CLASS_NAMES):
        return list(CLASS_NAMES)
    return names


def read_patient_ids(data_dir: Path) -> dict[str, str]:
    """file (relative to data_dir) -> patient id, from manifest.csv when present."""
    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as handle:
        return {row["file"]: row["patient_id"] for row in csv.DictReader(handle)}


def scan_split(data_dir: Path, split: str, classes: list[str]) -> list[Sample]:
    """All image files of one split; an empty or missing class folder is an error."""
    patient_ids = read_patient_ids(data_dir)
    samples = []
    for label, name in enumerate(classes):
        class_dir = data_dir / split / name
        files = sorted(
            p for p in class_dir.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ) if class_dir.is_dir() else []
        if not files:
            raise DatasetError(f"class folder {class_dir} is missing or holds no images")
        for path in files:
            relative = path.relative_to(data_dir).as_posix()
            samples.append(Sample(path, label, patient_ids.get(relative, f"file:{relative}")))
    return samples


def split_by_patient(
    samples: list[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Patient-grouped split, stratified by each patient's label set: no patient on both sides."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.patient_id].append(sample)
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for patient, members in sorted(groups.items()):
        strata[tuple(sorted({s.label for s in members}))].append(patient)
    rng = random.Random(seed)
    val_patients: set[str] = set()
    for patients in strata.values():
        rng.shuffle(patients)
        target = val_fraction * sum(len(groups[p]) for p in patients)
        taken = 0
        for patient in patients:
            if taken >= target:
                break
            val_patients.add(patient)
            taken += len(groups[patient])
    train = [s for s in samples if s.patient_id not in val_patients]
    val = [s for s in samples if s.patient_id in val_patients]
    return train, val


def limit_per_class(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most `limit` samples of each class, drawn reproducibly (for quick runs)."""
    if limit is None:
        return samples
    rng = random.Random(seed)
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_label[sample.label].append(sample)
    kept = []
    for label in sorted(by_label):
        members = by_label[label]
        kept.extend(rng.sample(members, min(limit, len(members))))
    return kept


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """'Balanced' weights n / (k * count_c): a rare class (COVID-19) weighs as much in the loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    if (counts == 0).any():
        raise DatasetError("every class needs at least one training image")
    weights = labels.size / (n_classes * counts)
    return {index: float(weight) for index, weight in enumerate(weights)}


def load_split(samples: list[Sample], image_size: int, description: str) -> LoadedSplit:
    """Decode and resize every image once; skip unreadable files with a warning naming each."""
    images, labels, paths, skipped = [], [], [], []
    for sample in tqdm(samples, desc=f"decode {description}", unit="img", leave=False):
        try:
            gray = decode_file(sample.path).gray
        except ImageError as error:
            skipped.append(sample.path)
            log.warning("skipping unreadable image %s: %s", sample.path, error)
            continue
        images.append(resize_gray(gray, image_size))
        labels.append(sample.label)
        paths.append(sample.path)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s)", description, len(skipped))
    if not images:
        raise DatasetError(f"no readable images in the {description} split")
    return LoadedSplit(np.stack(images), np.asarray(labels, dtype=np.int64), paths)
