"""Does a batch of films differ from the films the model was trained on? A two-sample test on
the model's pooled features against the run's feature bank (training.feature_bank).

A shift shows in a batch, not in one film (Rabanser et al., "Failing loudly", 2019): a film of
an unseen hospital can sit among the training films while the batch as a whole sits apart. The
score is a domain classifier's cross-validated AUC: how well a linear classifier tells the
batch's films from the bank's training films (0.5: not at all, 1: always). Two things would
make that AUC high for a batch of a known source's own new films, and are taken out:

- the mix: a hospital's batch holds other sources and labels in other shares than the bank. Each
  film of the batch is matched to the bank group (source and label) of its nearest training
  film, and the bank's films are weighted to the batch's group shares, so a batch is compared
  with the training films most like it;
- the model's fit to its own training films (their features are tighter than new films'): the
  threshold is the score of batches of the bank's val films (never trained on), drawn with
  skewed group mixes, at the batch's size (capped to what the val films allow: smaller batches
  spread wider, so the cap errs towards not flagging). Everything comes from the run's own bank,
  so the threshold follows the model it is computed for.

The features are z-scored on the bank's training films and projected on their first
COMPONENTS principal axes, so the classifier (ridge, closed form) is fast and stable with a few
dozen films. numpy only: the pages and the CLI share it without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.run_dir import FEATURE_BANK_FILE, MissingRunFileError, read_feature_bank

if TYPE_CHECKING:
    from training.feature_bank import FeatureBank

COMPONENTS = 64  # principal axes of the bank's training features
FOLDS = 5
RIDGE = 1.0  # the domain classifier's L2 penalty, per film
DRAWS = 60  # val batches drawn for the threshold
QUANTILE = 0.98  # of the val batches' scores: the threshold
MIN_FILMS = 50  # fewer films than this cannot tell a shift from chance
SKEW = 1.0  # Dirichlet concentration of the val batches' group mixes (1: any mix as likely)
SEED = 1337
VAL_SHARE = 0.25  # the largest val batch drawn, as a share of the bank's val films


class ShiftError(ValueError):
    """A batch the check cannot judge (too few films, no bank); the message is for a person."""


@dataclass(frozen=True)
class ShiftResult:
    """One batch's check: its size, score, the threshold at that size, and the verdict."""

    n: int
    score: float
    threshold: float
    method: str

    @property
    def shifted(self) -> bool:
        return self.score > self.threshold

    @property
    def message(self) -> str:
        figures = f"(score {self.score:.2f}, threshold {self.threshold:.2f})"
        if self.shifted:
            return (f"These {self.n} films differ from the films the model was trained on "
                    f"{figures}: validate on local labelled films before relying on it.")
        return (f"These {self.n} films are not told apart from the films the model was "
                f"trained on {figures}; a local validation on labelled films is still needed "
                f"before relying on it.")

    def as_json(self) -> dict:
        return {"n": self.n, "shifted": self.shifted, "score": round(self.score, 4),
                "threshold": round(self.threshold, 4), "method": self.method,
                "message": self.message}


def _auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> float:
    """Weighted ROC AUC (ties count half)."""
    order = np.argsort(scores, kind="mergesort")
    scores, positive, weights = scores[order], positive[order], weights[order]
    negative_weight = np.where(positive, 0.0, weights)
    below = np.cumsum(negative_weight) - negative_weight  # negatives strictly before
    _, first, counts = np.unique(scores, return_index=True, return_counts=True)
    tied = np.repeat(np.add.reduceat(negative_weight, first), counts)
    start = np.repeat(below[first], counts)
    wins = np.sum(weights[positive] * (start[positive] + 0.5 * tied[positive]))
    return float(wins / (weights[positive].sum() * negative_weight.sum()))


def _ridge_scores(train: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                  test: np.ndarray) -> np.ndarray:
    """A weighted ridge classifier (targets +-1, intercept unpenalised) fitted and applied."""
    design = np.hstack([train, np.ones((len(train), 1))])
    penalty = RIDGE * weights.sum() / len(weights) * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    weighted = design * weights[:, None]
    coef = np.linalg.solve(design.T @ weighted + penalty, weighted.T @ targets)
    return np.hstack([test, np.ones((len(test), 1))]) @ coef


@dataclass(frozen=True)
class ShiftCheck:
    """The bank's training films (projected, with their groups) and its val films, ready to
    score batches of pooled features."""

    mean: np.ndarray
    scale: np.ndarray
    axes: np.ndarray  # (D, COMPONENTS)
    train: np.ndarray  # (M, COMPONENTS) the bank's training films, projected
    groups: np.ndarray  # (M,) int: each training film's (source, label) group
    val: np.ndarray  # (V, COMPONENTS) the bank's val films, projected
    val_groups: np.ndarray  # (V,) int, -1 for a group with no training film
    backbone: str = ""  # the run whose backbone made the bank's features
    # Thresholds already drawn, by batch size and seed: a page scores many batches of one size.
    _thresholds: dict[tuple[int, int], float] = field(default_factory=dict, compare=False,
                                                      repr=False)

    method = (f"domain classifier (ridge on {COMPONENTS} principal axes of the pooled "
              f"features, {FOLDS}-fold AUC) against the feature bank's training films weighted "
              f"to the batch's mix; threshold: the {QUANTILE:.0%} quantile of {DRAWS} "
              f"mixed batches of the bank's val films")

    @classmethod
    def from_bank(cls, bank: FeatureBank) -> ShiftCheck:
        return cls.fit(bank.features, bank.sources, bank.labels, bank.splits, bank.model_version)

    @classmethod
    def load(cls, run_dir: Path) -> ShiftCheck:
        """From the run's feature bank file (the app's way: it may not import training);
        ShiftError when the run has none, RunFileError when it cannot be read."""
        try:
            bank = read_feature_bank(run_dir, ("features", "sources", "labels", "splits",
                                               "model_version"))
        except MissingRunFileError as error:
            raise ShiftError(f"the served model ({run_dir}) has no feature bank "
                             f"({FEATURE_BANK_FILE}), so there is nothing to compare films "
                             "with") from error
        return cls.fit(bank["features"], bank["sources"], bank["labels"], bank["splits"],
                       str(bank["model_version"]))

    @classmethod
    def fit(cls, features: np.ndarray, sources: np.ndarray, labels: np.ndarray,
            splits: np.ndarray, backbone: str) -> ShiftCheck:
        """From a bank's arrays: (N, D) pooled features and each film's source, label and
        split; ``backbone``: the run whose backbone made them."""
        training, held = splits == "train", splits == "val"
        if training.sum() < COMPONENTS or held.sum() < MIN_FILMS:
            raise ShiftError(f"the feature bank of {backbone} holds too few films "
                             f"({training.sum()} training, {held.sum()} val) for a site check")
        features = features.astype(np.float32)
        mean = features[training].mean(axis=0)
        scale = features[training].std(axis=0) + 1e-6
        _, _, vectors = np.linalg.svd((features[training] - mean) / scale, full_matrices=False)
        axes = vectors[:COMPONENTS].T
        projected = ((features - mean) / scale) @ axes
        names = np.array([f"{source}:{label}" for source, label
                          in zip(sources, labels, strict=True)])
        known = sorted(set(names[training]))
        index = {name: position for position, name in enumerate(known)}
        return cls(mean, scale, axes, projected[training],
                   np.array([index[name] for name in names[training]]), projected[held],
                   np.array([index.get(name, -1) for name in names[held]]), backbone)

    def project(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float32) - self.mean) / self.scale) @ self.axes

    def nearest_groups(self, projected: np.ndarray) -> np.ndarray:
        """Each film's group: that of its nearest training film (cosine)."""
        def unit(rows: np.ndarray) -> np.ndarray:
            return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

        return self.groups[np.argmax(unit(projected) @ unit(self.train).T, axis=1)]

    def score_projected(self, batch: np.ndarray, seed: int = SEED) -> float:
        """The domain classifier's cross-validated AUC, batch against mix-matched training."""
        shares = np.bincount(self.nearest_groups(batch), minlength=self.groups.max() + 1)
        per_film = shares[self.groups] / np.bincount(self.groups)[self.groups]
        kept = per_film > 0
        reference = self.train[kept]
        ref_weights = per_film[kept] / per_film[kept].sum() * len(batch)
        films = np.vstack([batch, reference])
        is_batch = np.r_[np.ones(len(batch), bool), np.zeros(len(reference), bool)]
        weights = np.r_[np.ones(len(batch)), ref_weights]
        fold = np.random.default_rng(seed).permutation(len(films)) % FOLDS
        scores = np.empty(len(films))
        for part in range(FOLDS):
            test = fold == part
            scores[test] = _ridge_scores(films[~test], np.where(is_batch[~test], 1.0, -1.0),
                                         weights[~test], films[test])
        return _auc(scores, is_batch, weights)

    def threshold(self, count: int, seed: int = SEED) -> float:
        """The QUANTILE of the scores of DRAWS batches of the bank's val films, each drawn
        with a random group mix, at ``count`` films (at most VAL_SHARE of the val films, so
        that the draws differ)."""
        size = min(count, max(MIN_FILMS, int(VAL_SHARE * len(self.val))))
        if (size, seed) not in self._thresholds:
            self._thresholds[size, seed] = self._drawn_threshold(size, seed)
        return self._thresholds[size, seed]

    def _drawn_threshold(self, size: int, seed: int) -> float:
        rng = np.random.default_rng(seed)
        groups = np.unique(self.val_groups)
        scores = []
        for draw in range(DRAWS):
            mix = rng.dirichlet(np.full(len(groups), SKEW))
            chance = mix[np.searchsorted(groups, self.val_groups)]
            chosen = rng.choice(len(self.val), size, replace=False, p=chance / chance.sum())
            scores.append(self.score_projected(self.val[chosen], seed + draw))
        return float(np.quantile(scores, QUANTILE))

    def check(self, features: np.ndarray) -> ShiftResult:
        """(N, D) pooled features of a batch's accepted films -> the verdict."""
        count = len(features)
        if count < MIN_FILMS:
            raise ShiftError(f"{count} accepted films are too few for a site check: give at "
                             f"least {MIN_FILMS}.")
        return ShiftResult(count, self.score_projected(self.project(features)),
                           self.threshold(count), self.method)
