"""The numbers a run is judged by, as one JSON-ready dict (a run's model.run_dir.METRICS_FILE).

Beyond the four-class scores, a clinic asks two questions: is this X-ray normal or not
(`pneumonia_vs_normal`), and can the probabilities be taken at face value (`calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from model.calibration import checked_scores, reliability_bins
from model.formatting import label_scores, score
from model.labels import BACTERIAL, COVID, NORMAL, VIRAL, display_name

PNEUMONIA_THRESHOLD = 0.5
MAX_CURVE_POINTS = 200


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
    label_sets: Mapping[str, Sequence[str]] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict:
    """Every metric of a run's metrics file from labels and (N, classes) probabilities.

    ``labels`` index ``classes`` followed by the names of ``label_sets`` (a folder that stands
    for a set of classes, scored as "any of these"). The confusion matrix, per-class scores,
    ROC curves and macro-F1 use the fully labelled images; accuracy, pneumonia-vs-normal and
    calibration use all. ``groups`` ({"source": [...], "age_group": [...]}, one name per image)
    adds the same few figures for every subgroup under ``subgroups``.
    """
    classes = list(classes)
    columns = np.shape(probabilities)[-1]
    if columns != len(classes):
        raise ValueError(f"{columns} probability columns for {len(classes)} classes")
    keys, allowed = label_matrix(labels, classes, label_sets or {})
    probabilities, allowed = checked_scores(probabilities, allowed)
    labels = np.asarray(labels)
    single = labels < len(classes)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    true, called = labels[single], predicted[single]
    precision, recall, f1, support = precision_recall_fscore_support(
        true, called, labels=indices, zero_division=0)
    metrics = {
        "classes": classes,
        "accuracy": float(np.mean(allowed[np.arange(len(labels)), predicted])),
        # sklearn's macro average: over the classes present in labels or predictions
        "macro_f1": float(f1_score(true, called, average="macro", zero_division=0))
        if single.any() else None,
        "confusion_matrix": confusion_matrix(true, called, labels=indices).tolist(),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "roc": {name: _roc(true == i, probabilities[single, i]) for i, name in enumerate(classes)},
        "pneumonia_vs_normal": _pneumonia_vs_normal(allowed, probabilities, classes),
        "calibration": reliability_bins(probabilities, allowed),
        "n_samples": int(labels.size),
    }
    if label_sets:
        metrics["label_sets"] = _label_set_scores(labels, predicted, keys, classes, label_sets)
    if groups:
        metrics["subgroups"] = {
            kind: {name: subgroup_metrics(labels[members], probabilities[members], keys, allowed[
                members], classes) for name, members in _members(names).items()}
            for kind, names in groups.items() if len(names)
        }
    return metrics


def label_matrix(
    labels: np.ndarray, classes: Sequence[str], label_sets: Mapping[str, Sequence[str]]
) -> tuple[list[str], np.ndarray]:
    """(label names, (N, classes) bool of the classes each image's label allows)."""
    classes = list(classes)
    keys = classes + list(label_sets)
    masks = np.eye(len(keys), len(classes), dtype=bool)
    for row, members in enumerate(label_sets.values(), start=len(classes)):
        unknown = set(members) - set(classes)
        if unknown:
            raise ValueError(f"label set {keys[row]} names unknown classes {sorted(unknown)}")
        masks[row] = [name in members for name in classes]
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D array of label indices, got {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(keys)):
        raise ValueError(f"labels must lie in [0, {len(keys)}), got [{labels.min()}, "
                         f"{labels.max()}]")
    return keys, masks[labels]


def _members(names: Sequence[str]) -> dict[str, np.ndarray]:
    names = np.asarray(names)
    return {str(name): names == name for name in sorted(set(names.tolist()))}


def subgroup_metrics(
    labels: np.ndarray, probabilities: np.ndarray, keys: Sequence[str], allowed: np.ndarray,
    classes: Sequence[str],
) -> dict:
    """The figures that show a shortcut in one source or age group.

    Recall per label (a set's recall: called any of its classes), pneumonia-vs-normal AUC where
    both sides are present, and how often images that are not COVID-19 are called COVID-19.
    """
    classes = list(classes)
    predicted = probabilities.argmax(axis=1)
    hit = allowed[np.arange(len(labels)), predicted]
    figures: dict = {
        "n": int(labels.size),
        "accuracy": float(hit.mean()),
        "recall": {keys[key]: float(hit[labels == key].mean()) for key in sorted(set(labels))},
    }
    if NORMAL in classes:
        normal = classes.index(NORMAL)
        figures["pneumonia_vs_normal_auc"] = _auc(~allowed[:, normal],
                                                  1.0 - probabilities[:, normal])
    if COVID in classes:
        covid = classes.index(COVID)
        not_covid = ~allowed[:, covid]
        figures["called_covid_among_non_covid"] = _rate(predicted == covid, not_covid)
    return figures


def _label_set_scores(
    labels: np.ndarray, predicted: np.ndarray, keys: list[str], classes: list[str],
    label_sets: Mapping[str, Sequence[str]],
) -> dict:
    """For each label set: its members, n, how often one of them was called, and what was."""
    scores = {}
    for offset, (name, members) in enumerate(label_sets.items()):
        rows = labels == len(classes) + offset
        calls = predicted[rows]
        scores[name] = {
            "classes": list(members),
            "n": int(rows.sum()),
            "accuracy": _rate(np.isin(calls, [classes.index(m) for m in members]),
                              np.ones(calls.size, bool)),
            "called": {classes[i]: int((calls == i).sum()) for i in range(len(classes))},
        }
    return scores


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


def _pneumonia_vs_normal(allowed: np.ndarray, probabilities: np.ndarray, classes: list[str]
                         ) -> dict:
    """NORMAL against every pneumonia (COVID-19 included), scored by 1 - p(NORMAL)."""
    normal = classes.index(NORMAL)
    is_pneumonia = ~allowed[:, normal]
    score = 1.0 - probabilities[:, normal]
    called_pneumonia = score >= PNEUMONIA_THRESHOLD
    return {
        "auc": _auc(is_pneumonia, score),
        "sensitivity": _rate(called_pneumonia, is_pneumonia),
        "specificity": _rate(~called_pneumonia, ~is_pneumonia),
        "accuracy": float(np.mean(called_pneumonia == is_pneumonia)),
        "threshold": PNEUMONIA_THRESHOLD,
        "bacterial_vs_viral_accuracy": _bacterial_vs_viral_accuracy(allowed, probabilities,
                                                                    classes),
    }


def _bacterial_vs_viral_accuracy(
    allowed: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> float | None:
    """Among images known to be bacterial or known to be viral, how often the larger of those
    two is right.

    The hardest distinction on an X-ray, measured apart from the normal/COVID-19 decisions;
    pneumonia of unknown type cannot be scored.
    """
    if BACTERIAL not in classes or VIRAL not in classes:
        return None
    bacterial, viral = classes.index(BACTERIAL), classes.index(VIRAL)
    single = allowed.sum(axis=1) == 1
    is_viral = allowed[:, viral] & single
    members = is_viral | (allowed[:, bacterial] & single)
    called_viral = probabilities[:, viral] > probabilities[:, bacterial]
    return _rate(called_viral == is_viral, members)


def format_summary(metrics: dict) -> str:
    """A few lines for CLI logs: the numbers a reader checks first."""
    binary = metrics["pneumonia_vs_normal"]
    lines = [
        f"accuracy {score(metrics['accuracy'])}  macro-F1 {score(metrics['macro_f1'])}  "
        f"(n = {metrics['n_samples']})",
        f"pneumonia vs normal: AUC {score(binary['auc'])}  "
        f"sensitivity {score(binary['sensitivity'])}  "
        f"specificity {score(binary['specificity'])}",
    ]
    if COVID in metrics["per_class"]:
        covid = metrics["per_class"][COVID]
        lines.append(f"{display_name(COVID)}: recall {score(covid['recall'])}  "
                     f"precision {score(covid['precision'])}")
    lines.append(f"ECE {score(metrics['calibration']['ece'])}")
    for name, scores in metrics.get("label_sets", {}).items():
        lines.append(f"{display_name(name)} (any of "
                     f"{', '.join(map(display_name, scores['classes']))}): "
                     f"accuracy {score(scores['accuracy'])} (n = {scores['n']})")
    for kind, subgroups in metrics.get("subgroups", {}).items():
        lines.append(f"by {kind.replace('_', ' ')}:")
        lines.extend(f"  {name}: {format_subgroup(figures)}" for name, figures in subgroups.items())
    return "\n".join(lines)


def format_subgroup(figures: dict) -> str:
    """One subgroup's figures on one line."""
    recall = label_scores(figures["recall"])
    auc = score(figures.get("pneumonia_vs_normal_auc"))
    covid = score(figures.get("called_covid_among_non_covid"))
    return (f"n {figures['n']}, accuracy {score(figures['accuracy'])}, recall: {recall}; "
            f"pneumonia-vs-normal AUC {auc}; called COVID-19 among non-COVID {covid}")
