"""Reading class-folder datasets: samples, patient-grouped splits, sampling weights, pixels.

Layout of each data root: `DIR/train/<LABEL>/*`, optional `DIR/val/<LABEL>/*`, optional
`DIR/manifest.csv` with `file` (relative to DIR), `patient_id` and `source_repo` columns. A
label is a class, or a set of classes (a folder of partially labelled images, e.g. pneumonia of
unknown type). Without `val/`, train is split by patient so that no patient's images land on
both sides. Each image records its source and age group, for balancing and subgroup metrics.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.decode import IMAGE_SUFFIXES, decode_file
from model.errors import ImageError
from model.labels import CLASS_NAMES
from model.preprocess import resize_gray

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The data folder cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class LabelSpace:
    """The classes a model predicts, and folders that stand for a set of them.

    A sample's label indexes ``keys``: the classes first, then the set names, so a fully
    labelled sample's label is its class index.
    """

    classes: tuple[str, ...]
    sets: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return self.classes + tuple(name for name, _ in self.sets)

    def masks(self) -> np.ndarray:
        """(keys, classes) bool: which classes each label allows."""
        allowed = np.eye(len(self.keys), len(self.classes), dtype=bool)
        for row, (_, members) in enumerate(self.sets, start=len(self.classes)):
            allowed[row] = [name in members for name in self.classes]
        return allowed

    def set_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.sets)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into LabelSpace.keys
    patient_id: str
    source: str = "unknown"
    age_group: str = "adult"


@dataclass(frozen=True)
class LoadedSplit:
    """Images decoded and resized once (uint8, N x S x S), with their labels and origins."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    sources: tuple[str, ...] = ()
    age_groups: tuple[str, ...] = ()

    def counts(self, keys: Sequence[str]) -> dict[str, int]:
        found = Counter(self.labels.tolist())
        return {name: int(found[index]) for index, name in enumerate(keys)}

    def groups(self) -> dict[str, list[str]]:
        """Per-image subgroup names, by kind: what subgroup metrics are computed over."""
        return {"source": list(self.sources), "age_group": list(self.age_groups)}

    def populations(self, keys: Sequence[str]) -> dict[str, dict]:
        """{source: {"age_group", "counts": {label: n}}}: which populations hold which labels."""
        table: dict[str, Counter] = defaultdict(Counter)
        ages = dict(zip(self.sources, self.age_groups, strict=True))
        for label, source in zip(self.labels.tolist(), self.sources, strict=True):
            table[source][keys[label]] += 1
        return {source: {"age_group": ages[source], "counts": dict(sorted(counts.items()))}
                for source, counts in sorted(table.items())}


def find_classes(split_dir: Path) -> list[str]:
    """Class folder names: the product's order when they are its classes, else sorted."""
    names = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
    if not names:
        raise DatasetError(f"{split_dir} has no class folders (expected {split_dir}/<CLASS>/*.jpg)")
    return _product_order(names)


def _product_order(names: Iterable[str]) -> list[str]:
    names = sorted(set(names))
    if set(names) <= set(CLASS_NAMES):
        return [name for name in CLASS_NAMES if name in names]
    return names


def find_label_space(
    roots: Sequence[Path], split: str, label_sets: dict[str, tuple[str, ...]]
) -> LabelSpace:
    """The classes and label sets of the folders under every root's ``split``."""
    folders: set[str] = set()
    for root in roots:
        folders.update(find_classes(root / split))
    sets = tuple((name, members) for name, members in label_sets.items() if name in folders)
    classes = (folders - {name for name, _ in sets}).union(*(members for _, members in sets))
    return LabelSpace(tuple(_product_order(classes)), sets)


def read_manifest(data_dir: Path) -> dict[str, dict[str, str]]:
    """file (relative to data_dir) -> its manifest row, when manifest.csv is present."""
    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def source_of(row: dict[str, str] | None, data_dir: Path) -> str:
    """Where an image comes from: the manifest's patient-id namespace ("kermany:person1" ->
    "kermany", one hospital or collection each), else its source_repo, else the folder name."""
    if row:
        patient = row.get("patient_id", "")
        if ":" in patient:
            return patient.split(":", 1)[0]
        if row.get("source_repo"):
            return row["source_repo"]
    return data_dir.resolve().name


def scan_split(
    data_dir: Path, split: str, space: LabelSpace | Sequence[str],
    pediatric_sources: Iterable[str] = (),
) -> list[Sample]:
    """The image files of one split of one root, for the label folders it has.

    A label folder that is present but holds no images is an error; a root may lack some.
    """
    if not isinstance(space, LabelSpace):
        space = LabelSpace(tuple(space))
    manifest = read_manifest(data_dir)
    pediatric = set(pediatric_sources)
    samples = []
    present = [name for name in space.keys if (data_dir / split / name).is_dir()]
    if not present:
        raise DatasetError(f"{data_dir / split} holds none of the label folders {space.keys}")
    for name in present:
        class_dir = data_dir / split / name
        files = sorted(
            p for p in class_dir.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DatasetError(f"class folder {class_dir} holds no images")
        for path in files:
            relative = path.relative_to(data_dir).as_posix()
            row = manifest.get(relative)
            source = source_of(row, data_dir)
            samples.append(Sample(
                path, space.keys.index(name),
                row["patient_id"] if row else f"file:{relative}", source,
                "pediatric" if source in pediatric else "adult",
            ))
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


def sampling_weights(
    labels: np.ndarray, sources: Sequence[str], space: LabelSpace,
    balance_classes: bool = True, source_balance: float = 0.0,
) -> np.ndarray:
    """Each training image's chance of being drawn, summing to 1.

    A label set's image counts as an equal share of each of its classes. With
    ``balance_classes`` every class is drawn about equally often (exactly, without label
    sets), so the rare COVID-19 weighs as much as NORMAL. Within a class, source s with mass
    m_s is drawn in proportion to m_s ** (1 - source_balance), so one large source cannot
    define what the class looks like.
    """
    share = space.masks()[labels].astype(np.float64)
    share /= share.sum(axis=1, keepdims=True)
    class_mass = share.sum(axis=0)
    if (class_mass == 0).any():
        missing = [name for name, mass in zip(space.classes, class_mass, strict=True) if not mass]
        raise DatasetError(f"every class needs at least one training image; none for {missing}")
    source_names = sorted(set(sources))
    source_index = np.array([source_names.index(source) for source in sources])
    source_mass = np.stack([share[source_index == s].sum(axis=0)
                            for s in range(len(source_names))])  # (sources, classes)
    present = source_mass > 0
    with np.errstate(divide="ignore"):
        per_image = np.where(present, source_mass ** -source_balance, 0.0)
    target = (np.full(len(space.classes), 1 / len(space.classes)) if balance_classes
              else class_mass / class_mass.sum())
    class_scale = target / (per_image * source_mass).sum(axis=0)
    weights = (share * per_image[source_index] * class_scale).sum(axis=1)
    return weights / weights.sum()


def load_split(samples: list[Sample], image_size: int, description: str) -> LoadedSplit:
    """Decode and resize every image once; skip unreadable files with a warning naming each."""
    images, kept, skipped = [], [], []
    for sample in tqdm(samples, desc=f"decode {description}", unit="img", leave=False):
        try:
            gray = decode_file(sample.path).gray
        except ImageError as error:
            skipped.append(sample.path)
            log.warning("skipping unreadable image %s: %s", sample.path, error)
            continue
        images.append(resize_gray(gray, image_size))
        kept.append(sample)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s)", description, len(skipped))
    if not images:
        raise DatasetError(f"no readable images in the {description} split")
    return LoadedSplit(
        np.stack(images), np.asarray([s.label for s in kept], dtype=np.int64),
        [s.path for s in kept], tuple(s.source for s in kept), tuple(s.age_group for s in kept),
    )
