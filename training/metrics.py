"""The numbers a run is judged by, as one JSON-ready dict (a run's metrics.json).

Beyond the four-class scores, a clinic asks two questions: is this X-ray normal or not
(`pneumonia_vs_normal`), and can the probabilities be taken at face value (`calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from model.calibration import checked_scores, reliability_bins
from model.labels import display_name

NORMAL = "NORMAL"
BACTERIAL = "BACTERIAL_PNEUMONIA"
VIRAL = "VIRAL_PNEUMONIA"
COVID = "COVID19"
PNEUMONIA_THRESHOLD = 0.5
MAX_CURVE_POINTS = 200


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]
) -> dict:
    """Every metric of metrics.json from true class indices and (N, classes) probabilities."""
    classes = list(classes)
    columns = np.shape(probabilities)[-1]
    if columns != len(classes):
        raise ValueError(f"{columns} probability columns for {len(classes)} classes")
    probabilities, labels = checked_scores(probabilities, labels)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    return {
        "classes": classes,
        "accuracy": float(np.mean(predicted == labels)),
        # sklearn's macro average: over the classes present in labels or predictions
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "roc": {name: _roc(labels == i, probabilities[:, i]) for i, name in enumerate(classes)},
        "pneumonia_vs_normal": _pneumonia_vs_normal(labels, probabilities, classes),
        "calibration": reliability_bins(probabilities, labels),
        "n_samples": int(labels.size),
    }


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, or None when only one side is present and the AUC is undefined."""
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, score))


def _roc(positive: np.ndarray, score: np.ndarray) -> dict:
    """One-vs-rest ROC curve, thinned to at most MAX_CURVE_POINTS so the JSON stays small."""
    auc = _auc(positive, score)
    if auc is None:
        return {"auc": None, "fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(positive, score)
    keep = np.unique(np.linspace(0, fpr.size - 1, min(fpr.size, MAX_CURVE_POINTS)).round())
    keep = keep.astype(int)
    return {"auc": auc, "fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}


def _rate(hits: np.ndarray, members: np.ndarray) -> float | None:
    """The share of members that are hits, or None when there are no members."""
    return float(hits[members].mean()) if members.any() else None


def _pneumonia_vs_normal(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """NORMAL against every pneumonia (COVID-19 included), scored by 1 - p(NORMAL)."""
    normal = classes.index(NORMAL)
    is_pneumonia = labels != normal
    score = 1.0 - probabilities[:, normal]
    called_pneumonia = score >= PNEUMONIA_THRESHOLD
    return {
        "auc": _auc(is_pneumonia, score),
        "sensitivity": _rate(called_pneumonia, is_pneumonia),
        "specificity": _rate(~called_pneumonia, ~is_pneumonia),
        "accuracy": float(np.mean(called_pneumonia == is_pneumonia)),
        "threshold": PNEUMONIA_THRESHOLD,
        "bacterial_vs_viral_accuracy": _bacterial_vs_viral_accuracy(labels, probabilities, classes),
    }


def _bacterial_vs_viral_accuracy(
    labels: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> float | None:
    """Among true bacterial and viral cases, how often the larger of those two is right.

    The hardest distinction on an X-ray, measured apart from the normal/COVID-19 decisions.
    """
    if BACTERIAL not in classes or VIRAL not in classes:
        return None
    bacterial, viral = classes.index(BACTERIAL), classes.index(VIRAL)
    members = (labels == bacterial) | (labels == viral)
    called_viral = probabilities[:, viral] > probabilities[:, bacterial]
    return _rate(called_viral == (labels == viral), members)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_summary(metrics: dict) -> str:
    """A few lines for CLI logs: the numbers a reader checks first."""
    binary = metrics["pneumonia_vs_normal"]
    lines = [
        f"accuracy {_number(metrics['accuracy'])}  macro-F1 {_number(metrics['macro_f1'])}  "
        f"(n = {metrics['n_samples']})",
        f"pneumonia vs normal: AUC {_number(binary['auc'])}  "
        f"sensitivity {_number(binary['sensitivity'])}  "
        f"specificity {_number(binary['specificity'])}",
    ]
    if COVID in metrics["per_class"]:
        covid = metrics["per_class"][COVID]
        lines.append(f"{display_name(COVID)}: recall {_number(covid['recall'])}  "
                     f"precision {_number(covid['precision'])}")
    lines.append(f"ECE {_number(metrics['calibration']['ece'])}")
    return "\n".join(lines)
