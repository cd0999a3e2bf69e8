"""metrics.json, typed: the one reader of a run's validation figures (training.metrics writes
them; training.evaluate adds ``external``, training.adapt adds ``site``).

The file's keys are a public contract (other tools read it), so the file stays plain JSON;
inside the product it is read only here, into frozen dataclasses checked on read, so a
renamed or missing key fails where the file is read, naming the file and the key, not as a
KeyError deep inside a page. Figures that are undefined for a split (an AUC with one side
absent) are ``None``. A writer that adds a key later (``external``, ``site``) goes through
``set_metrics_key`` or ``merge_metrics_key``, which keep every other key as it was, known to
this code or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model.run_dir import METRICS_FILE, RunFileError, parse_fields, read_json, write_json


@dataclass(frozen=True)
class ClassScores:
    """One class, one-vs-rest, over the fully labelled images."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class RocCurve:
    """One class's ROC curve (thinned); empty, with no AUC, when one side is absent."""

    auc: float | None
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


@dataclass(frozen=True)
class PneumoniaVsNormal:
    """NORMAL against every pneumonia, scored by 1 - p(NORMAL)."""

    auc: float | None
    sensitivity: float | None
    specificity: float | None
    accuracy: float
    threshold: float
    bacterial_vs_viral_accuracy: float | None = None


@dataclass(frozen=True)
class Reliability:
    """The expected calibration error and its bins (model.calibration.reliability_bins)."""

    ece: float
    n_bins: int
    bins: tuple[dict, ...]


@dataclass(frozen=True)
class LabelSetScores:
    """A folder that stands for several classes (e.g. PNEUMONIA): right when any is called."""

    classes: tuple[str, ...]
    n: int
    accuracy: float | None
    called: dict[str, int]


@dataclass(frozen=True)
class GroupScores:
    """The figures that show a shortcut in one source or age group."""

    n: int
    accuracy: float
    recall: dict[str, float]  # label -> recall (a label set's: any of its classes called)
    pneumonia_vs_normal_auc: float | None = None
    called_covid_among_non_covid: float | None = None


@dataclass(frozen=True)
class ExternalScores:
    """One external check (training.external): films a hospital would meet, through the gate."""

    n: int
    refused: int
    accepted: int
    labels: dict[str, int]
    called: dict[str, dict[str, int]]  # label -> class -> films
    recall: dict[str, float]
    normal_recall: float | None
    called_covid_among_non_covid: float | None
    pneumonia_vs_normal_auc: float | None
    pneumonia_vs_normal_accuracy: float | None
    macro_f1: float | None
    accuracy: float | None
    ece: float | None
    description: str = ""
    unreadable: int = 0
    refused_fraction: float | None = None


@dataclass(frozen=True)
class Metrics:
    """metrics.json: the validation split's figures, plus the optional later keys."""

    classes: tuple[str, ...]
    accuracy: float
    macro_f1: float | None
    confusion_matrix: tuple[list[int], ...]  # true class (row) x called class (column)
    per_class: dict[str, ClassScores]
    roc: dict[str, RocCurve]
    pneumonia_vs_normal: PneumoniaVsNormal
    calibration: Reliability
    n_samples: int
    label_sets: dict[str, LabelSetScores] = field(default_factory=dict)
    subgroups: dict[str, dict[str, GroupScores]] = field(default_factory=dict)  # kind -> group
    external: dict[str, ExternalScores] = field(default_factory=dict)
    site: dict | None = None  # training.adapt's report, plain data (model_card.site_table)

    def subgroup(self, kind: str, name: str) -> GroupScores | None:
        """One source's or age group's figures, None when the run has no such group."""
        return self.subgroups.get(kind, {}).get(name)


def read_metrics(run_dir: Path) -> Metrics:
    """metrics.json, checked: a missing or mistyped key is a RunFileError naming it."""
    path = Path(run_dir) / METRICS_FILE
    return parse_fields(Metrics, read_json(path), path)


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """A new metrics.json from training.metrics' plain data."""
    write_json(Path(run_dir) / METRICS_FILE, metrics)


def set_metrics_key(run_dir: Path, key: str, value: object) -> None:
    """Set one top-level key of an existing metrics.json, keeping every other key."""
    content = _content(run_dir)
    write_json(Path(run_dir) / METRICS_FILE, {**content, key: value})


def merge_metrics_key(run_dir: Path, key: str, entries: dict) -> None:
    """Add entries to one top-level object of an existing metrics.json (replacing those of the
    same name, keeping the others and every other key)."""
    content = _content(run_dir)
    write_json(Path(run_dir) / METRICS_FILE, {**content, key: {**content.get(key, {}), **entries}})


def _content(run_dir: Path) -> dict:
    path = Path(run_dir) / METRICS_FILE
    content = read_json(path)
    if not isinstance(content, dict):
        raise RunFileError(f"{path} should hold a JSON object, not {type(content).__name__}")
    return content
