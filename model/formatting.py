"""How a figure is written for people, in the app, the model card and the CLI logs alike."""

from __future__ import annotations

from collections.abc import Mapping

from model.labels import display_name

NOT_AVAILABLE = "n/a"


def score(value: float | None, digits: int = 3) -> str:
    """A score such as an AUC or an F1: fixed decimals; "n/a" where it is undefined (None)."""
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}"


def share(value: float | None) -> str:
    """A share of images as a percentage with one decimal; "n/a" where it is undefined."""
    return NOT_AVAILABLE if value is None else f"{value:.1%}"


def label_scores(scores: Mapping[str, float | None], digits: int = 2) -> str:
    """Scores by class or label set, e.g. "Normal 0.90, Pneumonia 0.70"."""
    return ", ".join(f"{display_name(label)} {score(value, digits)}"
                     for label, value in scores.items())
