"""Temperature scaling: a stable softmax, a temperature that fits, bins that add up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.calibration import (
    calibration_report,
    cross_validated_ece,
    fit_temperature,
    reliability_bins,
    softmax,
)


def sample_calibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a perfectly calibrated model, and labels drawn from its own probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, 4))
    cumulative = softmax(logits).cumsum(axis=1)
    labels = (rng.random((n, 1)) > cumulative).sum(axis=1)
    return logits, labels


def test_softmax_rows_sum_to_one_and_keep_the_order():
    logits = np.array([[1.0, 2.0, 3.0, 0.5], [-4.0, 0.0, 4.0, 8.0]])
    probabilities = softmax(logits, temperature=2.5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))


def test_softmax_matches_the_textbook_formula():
    logits = np.array([0.0, np.log(3.0)])
    np.testing.assert_allclose(softmax(logits), [0.25, 0.75])
    np.testing.assert_allclose(softmax(logits, temperature=0.5), [0.1, 0.9])


def test_softmax_is_stable_on_huge_logits():
    probabilities = softmax(np.array([[1000.0, -1000.0, 999.0, 0.0]]))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[0, :3], [1 / (1 + np.e**-1), 0.0, 1 / (1 + np.e)])


def test_a_high_temperature_flattens_towards_uniform():
    probabilities = softmax(np.array([5.0, 0.0, -5.0, 1.0]), temperature=1e4)
    np.testing.assert_allclose(probabilities, 0.25, atol=1e-3)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_softmax_rejects_a_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        softmax(np.zeros((1, 4)), temperature)


@pytest.mark.parametrize("true_temperature", [3.0, 0.5])
def test_fit_recovers_a_known_temperature(true_temperature):
    logits, labels = sample_calibrated(6000)
    fitted = fit_temperature(logits * true_temperature, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)


def test_fitted_temperature_minimises_the_negative_log_likelihood():
    logits, labels = sample_calibrated(2000, seed=1)
    logits = logits * 2.0
    fitted = fit_temperature(logits, labels)

    def nll(temperature: float) -> float:
        return -np.log(softmax(logits, temperature)[np.arange(labels.size), labels]).mean()

    assert nll(fitted) <= min(nll(fitted * 0.9), nll(fitted * 1.1), nll(1.0))


def test_reliability_bins_by_hand():
    # Four samples at confidence 0.95 (three right), two at 0.55 (one right).
    probabilities = np.array([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 1])
    result = reliability_bins(probabilities, labels, n_bins=10)
    filled = [b for b in result["bins"] if b["count"]]
    assert [(b["lower"], b["upper"], b["count"]) for b in filled] == [(0.5, 0.6, 2), (0.9, 1.0, 4)]
    assert filled[0]["confidence"] == pytest.approx(0.55)
    assert filled[0]["accuracy"] == pytest.approx(0.5)
    assert filled[1]["accuracy"] == pytest.approx(0.75)
    assert result["ece"] == pytest.approx(2 / 6 * 0.05 + 4 / 6 * 0.2)


def test_a_confidence_on_an_edge_belongs_to_the_bin_below():
    result = reliability_bins(np.array([[0.6, 0.4]]), np.array([0]), n_bins=10)
    (filled,) = [b for b in result["bins"] if b["count"]]
    assert (filled["lower"], filled["upper"]) == (0.5, 0.6)
    assert result["ece"] == pytest.approx(0.4)


def test_bins_tile_the_unit_interval_and_count_every_sample():
    probabilities = softmax(np.random.default_rng(2).normal(scale=3, size=(500, 4)))
    probabilities[0] = [1.0, 0.0, 0.0, 0.0]
    result = reliability_bins(probabilities, np.zeros(500, dtype=int), n_bins=15)
    bins = result["bins"]
    assert result["n_bins"] == len(bins) == 15
    assert bins[0]["lower"] == 0.0 and bins[-1]["upper"] == 1.0
    assert all(a["upper"] == b["lower"] for a, b in zip(bins, bins[1:], strict=False))
    assert sum(b["count"] for b in bins) == 500
    assert bins[-1]["count"] >= 1, "confidence 1.0 falls in the last bin"
    empty = [b for b in bins if b["count"] == 0]
    assert empty and all(b["confidence"] is None and b["accuracy"] is None for b in empty)


def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="labels"):
        reliability_bins(np.full((3, 4), 0.25), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 4)), np.array([0, 4]))


def test_report_lowers_the_ece_of_over_confident_logits():
    logits, labels = sample_calibrated(3000, seed=3)
    report = calibration_report(logits * 4.0, labels)
    assert report.temperature > 1.0
    assert report.ece_after < report.ece_before / 2
    assert report.ece_after_cross_validated < report.ece_before / 2
    assert len(report.bins_before) == len(report.bins_after) == 15
    json.dumps(report.to_dict(), allow_nan=False)


def test_cross_validated_ece_is_scored_on_images_the_temperature_never_saw():
    logits, labels = sample_calibrated(400, seed=5)
    over_confident = logits * 4.0
    held_out = cross_validated_ece(over_confident, labels, repeats=5)
    in_sample = calibration_report(over_confident, labels).ece_after
    # Fitted and scored on the same images the ECE is lowest; held out it can only be larger.
    assert in_sample < held_out < reliability_bins(softmax(over_confident), labels)["ece"] / 2
    assert held_out == cross_validated_ece(over_confident, labels, repeats=5), "seeded"


def test_scaling_keeps_probabilities_summing_to_one_and_predictions_unchanged():
    logits, labels = sample_calibrated(500, seed=4)
    temperature = fit_temperature(logits * 3.0, labels)
    calibrated = softmax(logits * 3.0, temperature)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), logits.argmax(axis=1))
