"""Validated at this site, or not: which site a served model was validated at, and what to tell
a reader until it has been.

A run adapted with ``training.adapt --name NAME`` was checked on that site's held-out films, so
it names its site (metadata ``adapted_from.site``); the shipped model names none. Until a model
names a site, every result carries the notice, with the figure that matters most from the run's
external checks (metrics.json ``external``: films from hospitals or batches not in training),
read from the run, never written here.
"""

from __future__ import annotations

from model.labels import COVID, NORMAL, display_name
from model.run_dir import Metadata
from model.run_metrics import Metrics

SITES_PAGE = "validate on your own films on the Sites page before relying on it"


def validated_at_site(metadata: Metadata) -> str | None:
    """The site the run was validated at; None for a run validated at no site."""
    site = (metadata.adapted_from or {}).get("site")
    return str(site) if site else None


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
