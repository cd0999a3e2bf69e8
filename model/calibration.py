"""Temperature scaling: one scalar that makes the model's confidences honest.

Fine-tuned networks are over-confident; dividing the logits by a temperature fitted on
validation data (Guo et al., 2017) fixes the confidences without changing any prediction.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from model.resampling import random_halves
from model.run_dir import Calibration

TEMPERATURE_RANGE = (0.05, 20.0)


def checked_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float (N, K) and the labels as an (N, K) bool matrix of allowed classes.

    ``labels`` are class indices (N,), or already an (N, K) matrix whose rows allow one class
    or a set of them (a partially labelled image: "one of these"). A ValueError names a fault.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"expected scores of shape (N > 0, classes), got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    if labels.ndim == 2:
        if labels.shape != scores.shape or labels.dtype != bool or not labels.any(axis=1).all():
            raise ValueError(f"a label matrix must be bool {scores.shape} with a class "
                             f"allowed in every row, got {labels.dtype} {labels.shape}")
        return scores, labels
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels of shape {labels.shape} do not match "
                         f"{scores.shape[0]} score rows")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), "
                         f"got [{labels.min()}, {labels.max()}]")
    return scores, np.eye(scores.shape[1], dtype=bool)[labels]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of logits / temperature; subtracting the row maximum keeps exp finite."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exponentials = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def _mean_nll(logits: np.ndarray, allowed: np.ndarray, temperature: float) -> float:
    """Mean -log p(allowed classes): the ordinary NLL for single labels, the set's for sets."""
    scaled = logits / temperature
    in_set = logsumexp(np.where(allowed, scaled, -np.inf), axis=1)
    return float(np.mean(logsumexp(scaled, axis=1) - in_set))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of the labels.

    Searched over log T, where the loss is smooth and a bounded range keeps T positive.
    """
    logits, allowed = checked_scores(logits, labels)
    low, high = np.log(TEMPERATURE_RANGE)
    result = minimize_scalar(lambda log_t: _mean_nll(logits, allowed, float(np.exp(log_t))),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Top-1 confidence against accuracy in equal-width bins (lower, upper], and their ECE.

    Empty bins are kept, with null confidence and accuracy, so a diagram shows the gaps. A
    prediction is correct when its class is one the label allows.
    """
    probabilities, allowed = checked_scores(probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = allowed[np.arange(len(allowed)), probabilities.argmax(axis=1)]
    edges = np.arange(n_bins + 1) / n_bins
    bin_of = np.searchsorted(edges[1:-1], confidence, side="left")
    bins, ece = [], 0.0
    for index in range(n_bins):
        members = bin_of == index
        count = int(members.sum())
        mean_confidence = float(confidence[members].mean()) if count else None
        accuracy = float(correct[members].mean()) if count else None
        if count:
            ece += count / len(allowed) * abs(accuracy - mean_confidence)
        bins.append({"lower": float(edges[index]), "upper": float(edges[index + 1]),
                     "count": count, "confidence": mean_confidence, "accuracy": accuracy})
    return {"ece": float(ece), "n_bins": n_bins, "bins": bins}


def cross_validated_ece(
    logits: np.ndarray, labels: np.ndarray, repeats: int = 20, seed: int = 0
) -> float:
    """ECE on images the temperature never saw: fitted on one random half, scored on the other.

    The shipped temperature is fitted on all of val, so val's ECE after scaling is in-sample
    and flatters; this is the figure to expect on new images from the same sources.
    """
    logits, allowed = checked_scores(logits, labels)
    scores = []
    for fitted, held_out in random_halves(len(allowed), repeats, seed):
        temperature = fit_temperature(logits[fitted], allowed[fitted])
        scores.append(reliability_bins(softmax(logits[held_out], temperature),
                                       allowed[held_out])["ece"])
    return float(np.mean(scores))


def calibration_report(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit the temperature and show its effect: a run's calibration file."""
    temperature = fit_temperature(logits, labels)
    before = reliability_bins(softmax(logits), labels)
    after = reliability_bins(softmax(logits, temperature), labels)
    return Calibration(temperature=temperature, ece_before=before["ece"], ece_after=after["ece"],
                       ece_after_cross_validated=cross_validated_ece(logits, labels),
                       bins_before=tuple(before["bins"]), bins_after=tuple(after["bins"]))
