"""A run's metrics file: hand-computed cases for every block of the contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.labels import CLASS_NAMES
from training.metrics import MAX_CURVE_POINTS, classification_metrics, format_summary

CLASSES = list(CLASS_NAMES)  # NORMAL, BACTERIAL_PNEUMONIA, VIRAL_PNEUMONIA, COVID19

# Seven cases worked by hand; comments give the predicted class and 1 - p(NORMAL).
HAND_LABELS = np.array([0, 0, 0, 1, 1, 2, 3])
HAND_PROBABILITIES = np.array([
    [0.60, 0.20, 0.10, 0.10],  # NORMAL -> NORMAL     0.40
    [0.30, 0.50, 0.10, 0.10],  # NORMAL -> BACTERIAL  0.70
    [0.20, 0.60, 0.10, 0.10],  # NORMAL -> BACTERIAL  0.80
    [0.10, 0.70, 0.10, 0.10],  # BACTERIAL -> BACTERIAL  0.90
    [0.25, 0.30, 0.40, 0.05],  # BACTERIAL -> VIRAL   0.75
    [0.05, 0.15, 0.30, 0.50],  # VIRAL -> COVID19     0.95
    [0.10, 0.10, 0.10, 0.70],  # COVID19 -> COVID19   0.90
])


@pytest.fixture(scope="module")
def hand():
    return classification_metrics(HAND_LABELS, HAND_PROBABILITIES, CLASSES)


def test_keys_follow_the_contract(hand):
    assert set(hand) == {"classes", "accuracy", "macro_f1", "confusion_matrix", "per_class",
                         "roc", "pneumonia_vs_normal", "calibration", "n_samples"}
    assert hand["classes"] == CLASSES and hand["n_samples"] == 7


def test_confusion_matrix_rows_are_true_classes(hand):
    assert hand["confusion_matrix"] == [
        [1, 2, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 1],
    ]


def test_accuracy_and_per_class_scores_by_hand(hand):
    assert hand["accuracy"] == pytest.approx(3 / 7)
    per_class = hand["per_class"]
    assert per_class["NORMAL"] == pytest.approx(
        {"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3})
    assert per_class["BACTERIAL_PNEUMONIA"] == pytest.approx(
        {"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    assert per_class["VIRAL_PNEUMONIA"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert per_class["COVID19"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert hand["macro_f1"] == pytest.approx((0.5 + 0.4 + 0.0 + 2 / 3) / 4)


def test_one_vs_rest_auc_by_hand(hand):
    # NORMAL scores 0.6, 0.3, 0.2 against 0.1, 0.25, 0.05, 0.1: 11 of 12 pairs ordered.
    assert hand["roc"]["NORMAL"]["auc"] == pytest.approx(11 / 12)
    assert hand["roc"]["COVID19"]["auc"] == pytest.approx(1.0)
    curve = hand["roc"]["NORMAL"]
    assert curve["fpr"][0] == 0.0 and curve["fpr"][-1] == 1.0 and curve["tpr"][-1] == 1.0


def test_pneumonia_vs_normal_by_hand(hand):
    binary = hand["pneumonia_vs_normal"]
    # Pneumonia scores 0.9, 0.75, 0.95, 0.9 against normal 0.4, 0.7, 0.8: 11 of 12 pairs.
    assert binary["auc"] == pytest.approx(11 / 12)
    assert binary["sensitivity"] == pytest.approx(1.0)
    assert binary["specificity"] == pytest.approx(1 / 3)
    assert binary["accuracy"] == pytest.approx(5 / 7)
    assert binary["threshold"] == 0.5
    # Bacterial 0.7 vs viral 0.1 right, 0.3 vs 0.4 wrong; viral 0.3 vs 0.15 right.
    assert binary["bacterial_vs_viral_accuracy"] == pytest.approx(2 / 3)


def test_a_perfect_classifier_scores_one_everywhere():
    labels = np.repeat(np.arange(4), 5)
    probabilities = np.full((20, 4), 0.01)
    probabilities[np.arange(20), labels] = 0.97
    metrics = classification_metrics(labels, probabilities, CLASSES)
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert all(metrics["roc"][name]["auc"] == 1.0 for name in CLASSES)
    binary = metrics["pneumonia_vs_normal"]
    assert binary["auc"] == binary["sensitivity"] == binary["specificity"] == 1.0
    assert binary["bacterial_vs_viral_accuracy"] == 1.0
    assert metrics["calibration"]["ece"] == pytest.approx(0.03)


def test_an_absent_class_has_no_auc_and_does_not_crash():
    labels = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.tile([0.4, 0.3, 0.2, 0.1], (6, 1))
    metrics = classification_metrics(labels, probabilities, CLASSES)
    assert metrics["roc"]["COVID19"] == {"auc": None, "fpr": [], "tpr": []}
    assert metrics["per_class"]["COVID19"]["support"] == 0
    json.dumps(metrics, allow_nan=False)


def test_only_normal_cases_leave_the_pneumonia_figures_undefined():
    labels = np.zeros(4, dtype=int)
    probabilities = np.tile([0.7, 0.1, 0.1, 0.1], (4, 1))
    binary = classification_metrics(labels, probabilities, CLASSES)["pneumonia_vs_normal"]
    assert binary["auc"] is None and binary["sensitivity"] is None
    assert binary["bacterial_vs_viral_accuracy"] is None
    assert binary["specificity"] == 1.0


def test_long_roc_curves_are_thinned_but_keep_their_ends():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=5000)
    probabilities = rng.dirichlet(np.ones(4), size=5000)
    metrics = classification_metrics(labels, probabilities, CLASSES)
    text = json.dumps(metrics, allow_nan=False)
    for name in CLASSES:
        fpr, tpr = metrics["roc"][name]["fpr"], metrics["roc"][name]["tpr"]
        assert 2 < len(fpr) == len(tpr) <= MAX_CURVE_POINTS
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(text) < 60_000


def test_probability_columns_must_match_the_classes():
    with pytest.raises(ValueError, match="classes"):
        classification_metrics(HAND_LABELS, HAND_PROBABILITIES[:, :3], CLASSES)


def test_summary_names_the_headline_numbers(hand):
    summary = format_summary(hand)
    assert "accuracy 0.429" in summary and "macro-F1 0.392" in summary
    assert "AUC 0.917" in summary and "sensitivity 1.000" in summary
    assert "specificity 0.333" in summary
    assert "COVID-19: recall 1.000  precision 0.500" in summary
    assert f"ECE {hand['calibration']['ece']:.3f}" in summary
