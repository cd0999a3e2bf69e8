"""Local validation on the Sites page, as plain functions: score the served model as it is on a
.zip of the site's labelled films ("validate only"), or take an adaptation's before/after, show
the figures against what docs/GOING_LIVE.md asks for, and let an admin accept the model as
validated at the site (records.site_acceptances: one audit row, honoured by every page).

The films are written numbered into a temporary folder (webapp.site_onboarding reads the .zip
as an adaptation does) and deleted as soon as the figures are back.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.bounded_zip import ZipLimits
from model.labels import COVID, NORMAL, display_name
from pipeline.adapt_jobs import Job
from pipeline.local_validation import run_validation
from records.accounts import Actor
from records.db import Database
from records.model_activations import Served
from records.site_acceptances import AcceptedValidation, accept
from webapp.site_onboarding import GatheredFilms, SiteInputError, films_from_zip, site_report

# What docs/GOING_LIVE.md asks a local validation for: films per label, and each figure's limit.
MIN_NORMAL_FILMS, MIN_FINDING_FILMS = 150, 50
DEMANDS = {"normal_recall": "at least 90 %", "covid_recall": "at least 90 %",
           "called_covid": "at most 5 %", "auc": "at least 0.90"}
VALIDATE_ONLY = "validate only"


@dataclass(frozen=True)
class LocalValidation:
    """A model's figures (training.external's) on a site's labelled films, ready to accept."""

    model: Served
    films: dict[str, int]  # the films the figures were measured on, per label
    figures: dict
    source: str  # "validate only", or the adaptation job whose held-out films they are


def validate_only(served: Served, name: str, data: bytes, limits: ZipLimits, sites_dir: Path
                  ) -> tuple[LocalValidation, GatheredFilms]:
    """The served model's figures on a .zip of labelled films (label folders, read as an
    adaptation's); SiteInputError when it holds none; pipeline.local_validation's
    ValidationFailed when they cannot be validated on (too few, refused by the gate...)."""
    sites_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".validation-", dir=sites_dir) as folder:
        films = films_from_zip(name, data, limits, Path(folder))
        if not films.total:
            raise SiteInputError("No films to validate on: " + (
                "; ".join(films.skipped[:5]) or "the .zip holds none."))
        answer = run_validation(served.run_dir, Path(folder))
    return LocalValidation(Served(served.run_dir, answer["model"]), answer["labels"],
                           answer["figures"], VALIDATE_ONLY), films


def from_adaptation(job: Job, version: str) -> LocalValidation | None:
    """An adapted run's figures on the site's held-out films (after adapting); None without."""
    report = site_report(job.out)
    after = (report or {}).get("held_out_after")
    if not after:
        return None
    films = {label: sum(called.values()) for label, called in after["called"].items()}
    return LocalValidation(Served(job.out, version), films, after,
                           f"adaptation {job.folder.name} (held-out films)")


def _share_called(figures: dict, label: str, name: str) -> tuple[int, float | None]:
    called = figures["called"].get(label, {})
    total = sum(called.values())
    return total, (called.get(name, 0) / total if total else None)


def figure_rows(validation: LocalValidation) -> list[dict]:
    """The figures as table rows: each label's recall, normal films called COVID-19, non-COVID
    films called COVID-19, pneumonia-vs-normal AUC (where both were present), with what
    docs/GOING_LIVE.md demands of each."""
    figures = validation.figures
    rows = []
    for label, recall in figures["recall"].items():
        demand = (DEMANDS["normal_recall"] if label == NORMAL else
                  DEMANDS["covid_recall"] if label == COVID else "")
        rows.append({"Figure": f"{display_name(label)} films called {display_name(label)}",
                     "Films": validation.films.get(label), "Value": recall, "Demand": demand})
    normals, called_covid = _share_called(figures, NORMAL, COVID)
    if normals:
        rows.append({"Figure": f"Normal films called {display_name(COVID)}", "Films": normals,
                     "Value": called_covid, "Demand": DEMANDS["called_covid"]})
    if figures.get("called_covid_among_non_covid") is not None:
        rows.append({"Figure": f"Non-COVID films called {display_name(COVID)}",
                     "Films": sum(count for label, count in validation.films.items()
                                  if label != COVID),
                     "Value": figures["called_covid_among_non_covid"],
                     "Demand": DEMANDS["called_covid"]})
    if figures.get("pneumonia_vs_normal_auc") is not None:
        rows.append({"Figure": "Pneumonia-vs-normal AUC", "Films": sum(validation.films.values()),
                     "Value": figures["pneumonia_vs_normal_auc"], "Demand": DEMANDS["auc"]})
    return rows


def short_of_minimum(films: dict[str, int]) -> list[str]:
    """Each label with fewer films than docs/GOING_LIVE.md asks for, in words; none: enough."""
    if NORMAL not in films:
        return [f"no normal films (at least {MIN_NORMAL_FILMS} are asked for)"]
    return [f"{display_name(label)}: {count} films, at least {needed} asked for"
            for label, count in sorted(films.items())
            for needed in [MIN_NORMAL_FILMS if label == NORMAL else MIN_FINDING_FILMS]
            if count < needed]


def accept_validation(database: Database, actor: Actor, site: str,
                      validation: LocalValidation) -> AcceptedValidation:
    """Record, audited, that ``actor`` accepts the validated model at ``site`` (NotAnAdmin,
    SiteNameError, AuditUnavailable as records.site_acceptances raises them)."""
    return accept(database, actor, site, validation.model.version, validation.model.run_dir,
                  validation.films, validation.figures, validation.source)
