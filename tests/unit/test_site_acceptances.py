"""An accepted local validation (records.site_acceptances) is its audit row in the keyed chain: who
accepted which model version at which site, on which films, with which figures. The app honours
only a signed row of the version it serves, and only an active admin can write one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from model.prediction import Prediction
from model.site_names import SiteNameError
from model.site_validation import Acceptance, SiteValidated, validated_at_site
from records import actions, audit
from records.accounts import CLI_ACTOR, Actor, NotAnAdmin, add_account, set_disabled
from records.site_acceptances import accept, accepted_validation
from records.tables import AuditEvent
from testkit.forged_audit import forge_row
from testkit.model_factory import metadata

ADMIN = Actor("ada", "admin")
FILMS = {"NORMAL": 160, "COVID19": 55}
FIGURES = {"recall": {"NORMAL": 0.93, "COVID19": 0.91}, "called_covid_among_non_covid": 0.03,
           "pneumonia_vs_normal_auc": None}


@pytest.fixture
def admin(database) -> Actor:
    add_account(database, CLI_ACTOR, ADMIN.username, "ada's password", "admin")
    return ADMIN


def acceptance_rows(database) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.action == actions.ACCEPT_VALIDATION)))


def test_an_acceptance_is_stored_audited_and_read_back(database, admin):
    done = accept(database, admin, "St Mary", "base-v1", Path("/runs/base"), FILMS, FIGURES,
                  "validate only")
    assert done.acceptance == Acceptance("base-v1", "St-Mary")
    [row] = acceptance_rows(database)
    assert (row.username, row.role, row.model_version) == ("ada", "admin", "base-v1")
    assert json.loads(row.detail) == {"site": "St-Mary", "run_dir": "/runs/base",
                                      "films": FILMS, "figures": FIGURES,
                                      "source": "validate only"}
    read = accepted_validation(database, "base-v1")
    assert read.acceptance == done.acceptance and read.films == FILMS
    assert read.figures == FIGURES and read.username == "ada" and read.seq == row.seq
    assert accepted_validation(database, "other-v2") is None  # another model: not validated
    assert audit.verify_chain(database).intact


def test_a_forged_acceptance_fails_verify_and_is_not_honoured(database, admin):
    forged = forge_row(database, actions.ACCEPT_VALIDATION, "base-v1",
                       {"site": "evil", "run_dir": "/x", "films": FILMS, "figures": FIGURES,
                        "source": "validate only"})
    check = audit.verify_chain(database)
    assert not check.intact and check.first_broken_seq == forged
    assert accepted_validation(database, "base-v1") is None

    accept(database, admin, "st-mary", "base-v1", Path("/runs/base"), FILMS, FIGURES,
           "validate only")
    forge_row(database, actions.ACCEPT_VALIDATION, "base-v1",
              {"site": "evil", "run_dir": "/x", "films": FILMS, "figures": FIGURES,
               "source": "validate only"})
    assert accepted_validation(database, "base-v1").acceptance.site == "st-mary"


def test_a_disabled_admin_cannot_accept_and_a_bad_site_name_is_refused(database, admin):
    with pytest.raises(SiteNameError, match="at most 40"):
        accept(database, admin, "x" * 41, "base-v1", Path("/r"), FILMS, FIGURES, "validate only")
    set_disabled(database, CLI_ACTOR, ADMIN.username, True)
    with pytest.raises(NotAnAdmin):
        accept(database, admin, "st-mary", "base-v1", Path("/r"), FILMS, FIGURES,
               "validate only")
    assert acceptance_rows(database) == [] and accepted_validation(database, "base-v1") is None


def test_the_accepted_site_names_predictions_of_that_version_only():
    shipped = replace(metadata(), version="base-v1", adapted_from=None)
    adapted = replace(shipped, version="base-v1+site-a", adapted_from={"site": "a"})
    accepted = Acceptance("base-v1", "st-mary")
    assert validated_at_site(shipped) is None
    assert validated_at_site(shipped, accepted) == "st-mary"
    assert validated_at_site(adapted, accepted) == "a"  # switched to: its own site, not this one
    assert validated_at_site(replace(shipped, version="base-v2"), accepted) is None


class Fixed:
    """A classifier that says one thing (what SiteValidated wraps, without a model)."""

    def __init__(self, version: str) -> None:
        self.metadata = replace(metadata(), version=version, adapted_from=None)
        self.version = version

    def classify(self, admitted, known_age=None):
        return [Prediction.of({"NORMAL": 0.9, "COVID19": 0.1}, self.version),
                Prediction.refused("not a chest film", self.version)]


def test_site_validated_predictions_carry_the_accepted_site():
    named = SiteValidated(Fixed("base-v1"), Acceptance("base-v1", "st-mary"))
    assert named.site == "st-mary" and named.version == "base-v1"
    result, refused = named.classify([None, None])
    assert result.validated_at_site == "st-mary" and refused.validated_at_site is None
    other = SiteValidated(Fixed("base-v2"), Acceptance("base-v1", "st-mary"))
    assert other.site is None and other.classify([None])[0].validated_at_site is None


def test_the_figures_and_the_minimum_counts_an_admin_is_shown():
    from records.model_activations import Served
    from webapp.local_validation import LocalValidation, figure_rows, short_of_minimum

    called = {"NORMAL": {"NORMAL": 140, "COVID19": 10}, "COVID19": {"COVID19": 45, "NORMAL": 5}}
    figures = {"called": called, "recall": {"NORMAL": 140 / 150, "COVID19": 0.9},
               "called_covid_among_non_covid": 10 / 150, "pneumonia_vs_normal_auc": None}
    validation = LocalValidation(Served(Path("/r"), "base-v1"), {"NORMAL": 150, "COVID19": 50},
                                 figures, "validate only")
    rows = {row["Figure"]: (row["Films"], row["Value"], row["Demand"])
            for row in figure_rows(validation)}
    assert rows["Normal films called Normal"] == (150, 140 / 150, "at least 90 %")
    assert rows["COVID-19 films called COVID-19"] == (50, 0.9, "at least 90 %")
    assert rows["Normal films called COVID-19"] == (150, 10 / 150, "at most 5 %")
    assert "Pneumonia-vs-normal AUC" not in rows  # no pneumonia films: undefined, not shown
    assert short_of_minimum({"NORMAL": 150, "COVID19": 50}) == []
    assert short_of_minimum({"NORMAL": 149, "COVID19": 50}) == [
        "Normal: 149 films, at least 150 asked for"]
    assert short_of_minimum({"COVID19": 80}) == ["no normal films (at least 150 are asked for)"]
