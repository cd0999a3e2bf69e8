"""Which model versions an admin accepted as validated at this site, after local validation on
the site's labelled films (the Sites page: "validate only" or an adaptation's before/after).

An acceptance is its audit row (action ``admin:accept-site-validation``; model_version: the
version accepted; detail: the site, the run directory, films per label, the figures and where
they came from), so the keyed chain covers it as it covers a model switch: a row written into
the database without the audit key fails ``python -m records.audit verify`` and is not honoured
either. The app honours the newest signed acceptance of the version it serves
(model.site_validation.validated_at_site); a model switched to is validated only once accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from model.site_names import site_name
from model.site_validation import Acceptance
from records import actions, audit
from records.accounts import Actor, check_admin
from records.audit_key import audit_key
from records.db import Database
from records.settings import load_settings
from records.tables import AuditEvent


@dataclass(frozen=True)
class AcceptedValidation:
    """One acceptance as its audit row holds it (``seq``: the row's number)."""

    acceptance: Acceptance
    run_dir: Path
    films: dict[str, int]
    figures: dict
    source: str
    username: str
    at: datetime
    seq: int


def _accepted(row: AuditEvent) -> AcceptedValidation:
    detail = json.loads(row.detail)
    return AcceptedValidation(Acceptance(row.model_version, detail["site"]),
                              Path(detail["run_dir"]), detail["films"], detail["figures"],
                              detail["source"], row.username, row.at, row.seq)


def accept(database: Database, actor: Actor, site: str, version: str, run_dir: Path,
           films: dict[str, int], figures: dict, source: str) -> AcceptedValidation:
    """Record that ``actor`` accepts ``version`` as validated at ``site`` on ``films`` (counts
    per label) with these ``figures``, as one audit row; ``actor`` must be an active admin now
    (NotAnAdmin, and no row, otherwise); SiteNameError for a name model.site_names refuses."""
    name = site_name(site)
    with audit.audited(database) as session:
        check_admin(session, actor)
        row = audit.append(session, audit.Event(
            actor.username, actor.role, actions.ACCEPT_VALIDATION, model_version=version,
            detail={"site": name, "run_dir": str(run_dir), "films": films, "figures": figures,
                    "source": source}))
        return _accepted(row)


def accepted_validation(database: Database, version: str) -> AcceptedValidation | None:
    """The newest acceptance of ``version`` whose audit row carries a valid keyed hash; None
    when none does (rows without one are not honoured)."""
    key = audit_key(load_settings())
    with database.session() as session:
        first_keyed = audit.keyed_from(session, key)
        rows = session.scalars(select(AuditEvent).where(
            AuditEvent.action == actions.ACCEPT_VALIDATION,
            AuditEvent.model_version == version).order_by(AuditEvent.seq.desc()))
        return next((_accepted(row) for row in rows
                     if audit.is_signed(row, key, first_keyed)), None)
