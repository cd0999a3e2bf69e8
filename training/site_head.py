"""The head a site adaptation refits, as plain arrays: the logits Dense layer's weights, the
calibrated probabilities the predictor would give under them, and their fit. The fit is an
L-BFGS minimisation of the set cross-entropy (as training.losses) on pooled features, with an L2
pull towards the base head, only the chosen age blocks free, and the bank's films fitted to the
base head's own probabilities plus their labels (learning without forgetting, COVID-19 anchored
harder), so the backbone never moves and what it gates and explains stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from model.age_groups import AGE_GROUPS
from model.calibration import softmax
from model.populations import class_logits
from training.data import LabelSpace
from training.external import accepted_figures

if TYPE_CHECKING:
    from model.predictor import Predictor

L2_TO_BASE = 1e-3  # pull of the head towards the base head, per weight
ANCHOR = 1.0  # the bank's films also fitted to their labels, with this share of their weight
COVID_ANCHOR = 3.0  # ... COVID-19 films this many times more (keeps COVID-19 recall)
MAX_ITERATIONS = 300


@dataclass(frozen=True)
class Head:
    """The logits Dense layer's weights: (D, G*C) kernel and (G*C,) bias."""

    kernel: np.ndarray
    bias: np.ndarray

    def raw_logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.kernel + self.bias


def head_of(model, layer_name: str) -> Head:
    kernel, bias = model.get_layer(layer_name).get_weights()
    return Head(kernel.astype(np.float64), bias.astype(np.float64))


def head_of_predictor(predictor: Predictor) -> Head:
    return head_of(predictor.model, predictor.metadata.logits_layer)


def probabilities(head: Head, features: np.ndarray, populations: np.ndarray,
                  n_classes: int, temperature: float) -> np.ndarray:
    """Calibrated class probabilities as the predictor gives them (model.populations)."""
    raw = head.raw_logits(features)
    n_groups = raw.shape[1] // n_classes
    logits = np.asarray(class_logits(raw, np.asarray(populations, np.int32), n_groups,
                                     n_classes))
    return softmax(logits, temperature)


def fit_head(base: Head, features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
             l2: float = L2_TO_BASE, max_iterations: int = MAX_ITERATIONS,
             soft: np.ndarray | None = None, free: np.ndarray | None = None) -> Head:
    """The head minimising the weighted set cross-entropy (one softmax over all blocks, as
    training.losses) plus ``l2`` x squared distance to the base head; L-BFGS from the base.

    ``soft``: rows where it is true are fitted to the base head's own probabilities instead
    (distillation, "learning without forgetting"): the bank keeps what the model said.
    ``free``: (G*C,) bool, the logits (columns) that may change; the others stay the base's.
    """
    x = features.astype(np.float64)
    weights = weights / weights.sum()
    shape = base.kernel.shape
    soft = np.zeros(len(x), bool) if soft is None else soft
    mask = np.ones(shape[1]) if free is None else np.asarray(free, np.float64)
    raw_base = base.raw_logits(x[soft])
    base_probabilities = np.exp(raw_base - logsumexp(raw_base, axis=1, keepdims=True))

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        kernel, bias = theta[:-shape[1]].reshape(shape), theta[-shape[1]:]
        raw = x @ kernel + bias
        total = logsumexp(raw, axis=1)
        inside = logsumexp(np.where(targets, raw, -np.inf), axis=1)
        p_all = np.exp(raw - total[:, None])
        p_in = np.where(targets, np.exp(raw - inside[:, None]), 0.0)
        p_in[soft] = base_probabilities
        inside[soft] = (base_probabilities * raw[soft]).sum(axis=1)
        residual = (p_all - p_in) * weights[:, None]
        delta_k, delta_b = kernel - base.kernel, bias - base.bias
        loss = float(weights @ (total - inside) + l2 * ((delta_k ** 2).sum()
                                                        + (delta_b ** 2).sum()))
        grad = np.concatenate([((x.T @ residual + 2 * l2 * delta_k) * mask).ravel(),
                               (residual.sum(axis=0) + 2 * l2 * delta_b) * mask])
        return loss, grad

    start = np.concatenate([base.kernel.ravel(), base.bias])
    result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iterations})
    return Head(result.x[:-shape[1]].reshape(shape), result.x[-shape[1]:])


def anchored(features: np.ndarray, targets: np.ndarray, weights: np.ndarray, n_bank: int,
             bank_labels: np.ndarray, covid_label: int | None, anchor: float = ANCHOR,
             covid_anchor: float = COVID_ANCHOR
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """training_set's rows plus the first ``n_bank`` (the bank's) again, fitted to their labels
    with ``anchor`` x their weight (COVID-19 films ``covid_anchor`` x more); and the rows fitted
    to the base head instead (the bank's first copies)."""
    extra = anchor * weights[:n_bank] * np.where(bank_labels == covid_label, covid_anchor, 1.0)
    soft = np.concatenate([np.ones(n_bank, bool), np.zeros(len(features), bool)])
    return (np.concatenate([features, features[:n_bank]]),
            np.concatenate([targets, targets[:n_bank]]),
            np.concatenate([weights, extra]), soft)


def free_blocks(populations: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """(G*C,) bool: the logits of the age blocks these films are read in."""
    free = np.zeros((n_groups, n_classes), bool)
    free[np.unique(populations)] = True
    return free.ravel()


def group_index(age_group: str, n_groups: int) -> int:
    return AGE_GROUPS.index(str(age_group)) if n_groups > 1 else 0


def figures(head: Head, features: np.ndarray, labels: np.ndarray, populations: np.ndarray,
            space: LabelSpace, temperature: float) -> dict:
    """training.external's figures for these films under ``head``."""
    probs = probabilities(head, features, populations, len(space.classes), temperature)
    return accepted_figures(labels, probs, space)
