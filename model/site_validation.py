"""Validated at this site, or not: which site a served model was validated at, and what to tell
a reader until it has been.

A run adapted with ``training.adapt --name NAME`` was checked on that site's held-out films, so
it names its site (metadata ``adapted_from.site``); the shipped model names none. In the app, an
admin's accepted local validation of the served version (records.site_acceptances, the Sites
page) names this installation's site for it: ``validated_at_site`` is the one place both meet.
Until a model names a site, every result carries the notice, with the figure that matters most
from the run's external checks (metrics.json ``external``: films from hospitals or batches not
in training), read from the run, never written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from model.decode import DecodedImage
from model.explanation import Explanation
from model.labels import COVID, NORMAL, display_name
from model.prediction import Prediction
from model.run_dir import Metadata
from model.run_metrics import Metrics

if TYPE_CHECKING:
    from model.classifier import Admitted, Classifier

SITES_PAGE = "validate on your own films on the Sites page before relying on it"


@dataclass(frozen=True)
class Acceptance:
    """An admin's acceptance that ``model_version`` was validated at ``site`` on its films."""

    model_version: str
    site: str


def validated_at_site(metadata: Metadata, accepted: Acceptance | None = None) -> str | None:
    """The site the run was validated at: the one an admin accepted this very version at (the
    app), else the one it was adapted at; None for a run validated at no site."""
    if accepted is not None and accepted.model_version == metadata.version:
        return accepted.site
    site = (metadata.adapted_from or {}).get("site")
    return str(site) if site else None


class SiteValidated:
    """A classifier whose predictions name the site ``validated_at_site`` gives for its model
    and the acceptance given (the app's view of the served model); the rest is the inner one's."""

    def __init__(self, inner: Classifier, accepted: Acceptance | None) -> None:
        self.inner = inner
        self.site = validated_at_site(inner.metadata, accepted)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def _named(self, prediction: Prediction) -> Prediction:
        if prediction.refusal is not None or prediction.validated_at_site == self.site:
            return prediction
        return replace(prediction, validated_at_site=self.site)

    def classify(self, admitted: Sequence[Admitted], known_age=None) -> list[Prediction]:
        return [self._named(prediction)
                for prediction in self.inner.classify(admitted, known_age)]

    def explain(self, image: DecodedImage, class_name: str | None = None,
                age_group: str | None = None) -> Explanation:
        explanation = self.inner.explain(image, class_name, age_group)
        return replace(explanation, prediction=self._named(explanation.prediction))


def worst_normal_figure(metrics: Metrics | None) -> tuple[str, float, int] | None:
    """Across the external checks, the largest share of normal films called COVID-19 (the
    false alarm that costs most); where none was, called anything but normal: (what they were
    called, share, normal films in that check). None without a check of normal films."""
    checks = [(scores.called.get(NORMAL, {}), scores.labels[NORMAL])
              for scores in (metrics.external.values() if metrics is not None else ())
              if scores.labels.get(NORMAL)]
    for what, count in ((display_name(COVID), lambda called, n: called.get(COVID, 0)),
                        ("something other than normal",
                         lambda called, n: n - called.get(NORMAL, 0))):
        shares = [(count(called, n) / n, n) for called, n in checks if count(called, n)]
        if shares:
            return (what, *max(shares))
    return None


def not_validated_notice(metrics: Metrics | None) -> str:
    """The sentence every result of a model not validated at this site carries."""
    told = "This model has not been validated at this site."
    figure = worst_normal_figure(metrics)
    if figure is None:
        return f"{told} No external check has been measured for it: {SITES_PAGE}."
    what, share, normals = figure
    in_words = (f"1 in {round(1 / share)}" if 0.1 <= share <= 0.5 and abs(
        1 / share - round(1 / share)) < 0.2 else f"{share:.0%} of")
    return (f"{told} At hospitals or batches not in training, {in_words} normal films "
            f"({normals} checked) {'was' if in_words.startswith('1 in') else 'were'} called "
            f"{what}; {SITES_PAGE}.")
