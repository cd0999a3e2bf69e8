"""External checks: labelled X-rays from populations the model was never trained on, scored as
a hospital would meet them (through the gate), for a run's metrics.json ``external`` key.

An external folder is read in one of three layouts: a `manifest.csv` with a `file` or an
`image` column (relative to the folder) and a `label` column (other columns, such as lung
masks, are ignored); or `<LABEL>/*` image folders. A label is one of the model's classes or a
label set (training.data.LabelSpace). Each image takes the one accept/refuse path
(model.batch.classify): what the gate refuses is counted, and the figures are those of the
accepted images, computed by training.metrics.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.batch import classify
from model.decode import IMAGE_SUFFIXES, decode_file
from model.formatting import score, share
from model.labels import display_name
from model.preprocess import resize_gray
from training.data import DatasetError, LabelSpace, LoadedSplit, find_classes
from training.metrics import COVID, NORMAL, classification_metrics, label_matrix, subgroup_metrics

if TYPE_CHECKING:
    from model.predictor import Predictor

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
IMAGE_COLUMNS = ("file", "image")  # kermany_test_a-style, lungs-style manifests
# What each external set is, in a sentence, keyed by folder name; an unknown folder is described
# by the first line of its README, else by its name alone.
KNOWN_SETS = {
    "kermany_test_a": "Children (Guangzhou), a later batch of the training hospital: half of the "
                      "patients of Kermany's official test split, none in training.",
    "lungs": "Adult normal PA films from a teaching collection (OpenIST) in no training set.",
}


@dataclass(frozen=True)
class ExternalSet:
    """An external folder's images and labels, with the sentence that says what it is."""

    name: str
    description: str
    paths: tuple[Path, ...]
    labels: tuple[str, ...]

    def sample(self, count: int | None) -> ExternalSet:
        """At most ``count`` images spread evenly over the set (the same ones every time), for a
        cheap check; None keeps all."""
        if count is None or count >= len(self.paths):
            return self
        chosen = np.unique(np.linspace(0, len(self.paths) - 1, count).round().astype(int))
        return ExternalSet(self.name, self.description,
                           tuple(self.paths[i] for i in chosen),
                           tuple(self.labels[i] for i in chosen))


def load_external(folder: Path, space: LabelSpace, image_size: int) -> LoadedSplit:
    """An external set as model inputs (resized once, no gate) with its labels in ``space``'s
    keys: for benches that score many models on the same images."""
    external = read_external(folder)
    images = np.stack([resize_gray(decode_file(path).gray, image_size)
                       for path in external.paths])
    labels = np.array([space.keys.index(label) for label in external.labels])
    return LoadedSplit(images, labels, list(external.paths))


def describe(folder: Path) -> str:
    """One sentence on what the set is: the registry's, else the README's first line."""
    if folder.name in KNOWN_SETS:
        return KNOWN_SETS[folder.name]
    for readme in (folder / "README.md", folder / "README.txt", folder / "README"):
        if readme.is_file():
            lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
            first = next((line.strip("# ").strip() for line in lines if line.strip()), "")
            if first:
                return first
    return f"External folder {folder.name}."


def read_external(folder: Path) -> ExternalSet:
    """The images and labels of an external folder, in whichever layout it has."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"external folder {folder} does not exist")
    if (folder / MANIFEST).is_file():
        pairs = _manifest_pairs(folder)
    else:
        pairs = [(path, label) for label in find_classes(folder)
                 for path in sorted((folder / label).iterdir())
                 if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    if not pairs:
        raise DatasetError(f"external folder {folder} holds no labelled images")
    paths, labels = zip(*pairs, strict=True)
    return ExternalSet(folder.name, describe(folder), tuple(paths), tuple(labels))


def _manifest_pairs(folder: Path) -> list[tuple[Path, str]]:
    with (folder / MANIFEST).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        image_column = next((name for name in IMAGE_COLUMNS if name in columns), None)
        if image_column is None or "label" not in columns:
            raise DatasetError(f"{folder / MANIFEST} needs a label column and one of "
                               f"{', '.join(IMAGE_COLUMNS)}; it has {', '.join(columns)}")
        pairs = [(folder / row[image_column], row["label"].strip()) for row in reader]
    missing = [str(path) for path, _ in pairs if not path.is_file()]
    if missing:
        raise DatasetError(f"{folder / MANIFEST} names {len(missing)} missing file(s), e.g. "
                           f"{missing[0]}")
    return pairs


def score_external(predictor: Predictor, external: ExternalSet, space: LabelSpace) -> dict:
    """The set's figures: how many were refused, and what the model called the rest.

    ``space`` is the model's classes and the label sets the set's labels use.
    """
    unknown = set(external.labels) - set(space.keys)
    if unknown:
        raise DatasetError(f"{external.name}: labels the model does not know: {sorted(unknown)}")
    outcomes = list(classify(list(range(len(external.paths))),
                             lambda index: decode_file(external.paths[index]), predictor))
    accepted = [outcome for outcome in outcomes if outcome.prediction.probabilities is not None]
    figures = {
        "description": external.description,
        "n": len(outcomes),
        "refused": sum(outcome.image is not None and outcome.prediction.refusal is not None
                       for outcome in outcomes),
        "unreadable": sum(outcome.image is None for outcome in outcomes),
        "accepted": len(accepted),
        "labels": dict(sorted(Counter(external.labels).items())),
    }
    figures["refused_fraction"] = figures["refused"] / figures["n"]
    labels = np.array([space.keys.index(external.labels[outcome.item]) for outcome in accepted],
                      dtype=np.int64)
    probabilities = np.array([[outcome.prediction.probabilities[name] for name in space.classes]
                              for outcome in accepted]).reshape(-1, len(space.classes))
    return {**figures, **accepted_figures(labels, probabilities, space)}


def accepted_figures(labels: np.ndarray, probabilities: np.ndarray, space: LabelSpace) -> dict:
    """What the model called the accepted images: the training.metrics figures a new hospital
    asks about, None where they are undefined (no image, or one side absent)."""
    keys, classes = list(space.keys), list(space.classes)
    present = sorted(set(labels.tolist()))
    called = {keys[key]: {name: int(np.sum(probabilities[labels == key].argmax(axis=1) == index))
                          for index, name in enumerate(classes)} for key in present}
    empty = {"called": called, "recall": {}, "normal_recall": None,
             "called_covid_among_non_covid": None, "pneumonia_vs_normal_auc": None,
             "pneumonia_vs_normal_accuracy": None, "macro_f1": None, "accuracy": None,
             "ece": None}
    if not labels.size:
        return empty
    metrics = classification_metrics(labels, probabilities, classes, space.set_map())
    _, allowed = label_matrix(labels, classes, space.set_map())
    subgroup = subgroup_metrics(labels, probabilities, keys, allowed, classes)
    normal_present = NORMAL in keys and keys.index(NORMAL) in present
    both_sides = normal_present and len(present) > 1
    return {
        **empty,
        "recall": subgroup["recall"],
        "accuracy": metrics["accuracy"],
        "normal_recall": subgroup["recall"][NORMAL] if normal_present else None,
        "called_covid_among_non_covid": subgroup.get("called_covid_among_non_covid")
        if COVID in classes else None,
        "pneumonia_vs_normal_auc": metrics["pneumonia_vs_normal"]["auc"] if both_sides else None,
        "pneumonia_vs_normal_accuracy":
            metrics["pneumonia_vs_normal"]["accuracy"] if both_sides else None,
        "macro_f1": metrics["macro_f1"] if len(present) > 1 else None,
        "ece": metrics["calibration"]["ece"],
    }


def format_external(external: dict[str, dict]) -> str:
    """The sets as a Markdown table, for logs, the bench script and the README."""
    lines = ["| set | n | refused | normal recall | called COVID-19 among non-COVID | "
             "pneumonia-vs-normal AUC / accuracy | macro-F1 | ECE | called (by label) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, figures in external.items():
        called = "; ".join(
            f"{display_name(label)}: " + ", ".join(f"{display_name(c)} {n}"
                                                    for c, n in calls.items() if n)
            for label, calls in figures["called"].items())
        lines.append(
            f"| {name} | {figures['n']} | {figures['refused']} "
            f"({share(figures['refused_fraction'])}) | {score(figures['normal_recall'])} | "
            f"{score(figures['called_covid_among_non_covid'])} | "
            f"{score(figures['pneumonia_vs_normal_auc'])} / "
            f"{score(figures['pneumonia_vs_normal_accuracy'])} | {score(figures['macro_f1'])} | "
            f"{score(figures['ece'])} | {called} |")
    return "\n".join(lines)
