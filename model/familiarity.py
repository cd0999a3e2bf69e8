"""Familiar or not: does an accepted film look like the films the served model was trained or
adapted on (scanner, processing, population)? Experimental: the flag is kept in the JSON lines
(``familiar``) but shown on no page, PDF or SR, because on the external checks it neither
separates errors nor flags most films of unseen sites (familiarity.json; below). Shift is told
from a batch instead (model.shift, training.site_check).

The out-of-distribution gate asks "is this a chest X-ray at all?"; this asks "has the model
been validated on films like this one?". A film's look is the channel means of an early-middle
backbone layer (LOOK_LAYER, 14 x 14 for a 224 input), read from the same compiled pass that
gives its probabilities (model.gradcam): texture and contrast statistics of that kind carry the
scanner's and processor's fingerprint, which the classifier's last layers are trained to drop.
A film is familiar when its look lies close to the run's feature bank (training.feature_bank):
the cosine distance (about the reference films' mean) to its NEIGHBOURS-th nearest training or
site film is within the limit, the (1 - FLAGGED_KNOWN) quantile of the same distance for the
bank's val films (not in the reference). A site's films join the reference when it is onboarded
(training.adapt), so its films become familiar.

Nearest neighbours rather than one Gaussian per source: a source is often several clusters
(scanners, views, ages), and the bank is small enough (~1,250 films) to search whole.
Cosine distance ignores how far along a direction a look lies, so an exaggerated version of a
familiar look reads as familiar. How the layer and the distance were chosen, and how often the
flag fires on known and unseen hospitals: docs/RESULTS.md (Familiarity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.run_dir import MissingRunFileError, read_feature_bank

LOOK_LAYER = "block6_project_bn"  # EfficientNet-Lite0's name (chosen: docs/RESULTS.md)
NEIGHBOURS = 5
FLAGGED_KNOWN = 0.05  # share of val films from known sources flagged unfamiliar


def _unit(looks: np.ndarray) -> np.ndarray:
    looks = np.asarray(looks, np.float32)
    return looks / np.maximum(np.linalg.norm(looks, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Familiarity:
    """The reference films' unit looks, the distance limit and the layer the looks come from."""

    reference: np.ndarray  # (M, K) float32, centred, unit length
    centre: np.ndarray  # (K,) the reference films' mean look
    limit: float
    layer: str = LOOK_LAYER
    neighbours: int = NEIGHBOURS

    @classmethod
    def fit(cls, looks: np.ndarray, splits: np.ndarray, layer: str = LOOK_LAYER,
            flagged_known: float = FLAGGED_KNOWN) -> Familiarity:
        """Reference: every non-val film (training and site films); limit from the val films.

        The centre is the training films' mean, so that a site's films, once onboarded, do not
        move it: a site far from the training films would otherwise pull the centre between
        the two clouds, where every film of each cloud points the same way."""
        splits = np.asarray(splits)
        held = splits == "val"
        looks = np.asarray(looks, np.float32)
        if not held.any() or held.all():
            raise ValueError("familiarity needs val films (for the limit) and reference films")
        training = splits == "train"
        centre = looks[training if training.any() else ~held].mean(axis=0)
        reference = _unit(looks[~held] - centre)
        neighbours = min(NEIGHBOURS, len(reference))
        probe = cls(reference, centre, np.inf, layer, neighbours)
        limit = float(np.quantile(probe.distances(looks[held]), 1 - flagged_known))
        return cls(reference, centre, limit, layer, neighbours)

    @classmethod
    def load(cls, run_dir: Path) -> Familiarity | None:
        """From the run's feature bank; None when the run has none, or an older bank without
        looks (its pooled features were measured not to tell sources apart)."""
        try:
            arrays = read_feature_bank(run_dir, ("splits",), optional=("looks", "look_layer"))
        except MissingRunFileError:
            return None
        if "looks" not in arrays:
            return None
        return cls.fit(arrays["looks"], arrays["splits"], str(arrays["look_layer"]))

    def distances(self, looks: np.ndarray) -> np.ndarray:
        """(N, K) looks -> (N,) cosine distance to the K-th nearest reference film."""
        similarity = _unit(np.asarray(looks, np.float32) - self.centre) @ self.reference.T
        kth = np.partition(-similarity, self.neighbours - 1, axis=1)[:, self.neighbours - 1]
        return 1.0 + kth

    def familiar(self, looks: np.ndarray) -> np.ndarray:
        """(N,) bool: within the limit."""
        return self.distances(looks) <= self.limit
