"""Which model the app serves: an admin switches it to any kept run directory (the Sites page),
each switch one audit row naming both models.

The switch is the audit row itself (action ``admin:activate-model``; trails from before also
hold ``admin:restore-previous-model``), so the keyed chain covers it: a row written into the
database without the audit key fails ``python -m records.audit verify``, and it is not served
either. The app serves the newest switch whose row carries a valid keyed hash, else the
settings' model (``CXR_MODEL_DIR``, else the shipped one); newer rows without one are skipped,
and ``Serving.unsigned`` names them for the admins. In model-server mode (``CXR_MODEL_URL``)
the server decides the model: a switch here is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from model.run_dir import RunFileError, read_metadata
from records import actions, audit
from records.accounts import Actor, check_admin
from records.audit_key import audit_key
from records.db import Database
from records.settings import load_settings
from records.tables import AuditEvent

SWITCH_ACTIONS = (actions.ACTIVATE_MODEL, actions.RESTORE_MODEL)


class ActivationError(ValueError):
    """A switch that will not be made; the message is for a person."""


SERVER_MODE = ("This app uses a model server (CXR_MODEL_URL): the model is chosen there. "
               "Start the server on the adapted run directory (python -m serving --model "
               "RUN_DIR) to switch; nothing was changed here.")


@dataclass(frozen=True)
class Served:
    """A run directory and the version its metadata names."""

    run_dir: Path
    version: str


@dataclass(frozen=True)
class Switch:
    """One activation: when, by whom, from which model to which (its audit row's ``seq``)."""

    at: datetime
    username: str
    served: Served
    previous: Served
    seq: int


@dataclass(frozen=True)
class Serving:
    """The run directory to serve: the newest signed switch's, else the default; ``unsigned``
    holds the audit row numbers of newer switches that carry no valid keyed hash (not served)."""

    run_dir: Path
    switch: Switch | None
    unsigned: tuple[int, ...]


def _switch(row: AuditEvent) -> Switch:
    detail = json.loads(row.detail)
    return Switch(row.at, row.username, Served(Path(detail["run_dir"]), row.model_version),
                  Served(Path(detail["previous_run_dir"]), detail["previous_version"]), row.seq)


def _switch_rows(session: Session, newest_first: bool):
    order = AuditEvent.seq.desc() if newest_first else AuditEvent.seq
    return session.scalars(select(AuditEvent).where(AuditEvent.action.in_(SWITCH_ACTIONS))
                           .order_by(order))


def _serving(session: Session, default: Path) -> Serving:
    key = audit_key(load_settings())
    first_keyed = audit.keyed_from(session, key)
    unsigned = []
    for row in _switch_rows(session, newest_first=True):
        if audit.is_signed(row, key, first_keyed):
            switch = _switch(row)
            return Serving(switch.served.run_dir, switch, tuple(unsigned))
        unsigned.append(row.seq)
    return Serving(default, None, tuple(unsigned))


def serving(database: Database, default: Path) -> Serving:
    """What to serve now, and any switch skipped for want of the audit key's signature."""
    with database.session() as session:
        return _serving(session, default)


def active_run_dir(database: Database, default: Path) -> Path:
    """The run directory to serve: the newest signed switch's, else ``default`` (the settings')."""
    return serving(database, default).run_dir


def switches(database: Database) -> list[Switch]:
    """Every signed switch, oldest first (Monitoring marks each, the Sites page lists them)."""
    key = audit_key(load_settings())
    with database.session() as session:
        first_keyed = audit.keyed_from(session, key)
        return [_switch(row) for row in _switch_rows(session, newest_first=False)
                if audit.is_signed(row, key, first_keyed)]


def _version(run_dir: Path) -> str | None:
    try:
        return read_metadata(run_dir).version
    except RunFileError:
        return None


def activate(database: Database, actor: Actor, run_dir: Path, default: Path,
             model_url: str | None = None) -> Switch:
    """Serve the run directory ``run_dir`` instead of what is served now (the newest signed
    switch's, else ``default``), as one audit row naming both; ``actor`` must be an active admin
    now (NotAnAdmin). ActivationError in model-server mode, when ``run_dir`` is not a readable
    run, or when it is what is served already. Whether its model loads is the caller's check
    (the app's process holds the model framework)."""
    if model_url:
        raise ActivationError(SERVER_MODE)
    version = _version(run_dir)
    if version is None:
        raise ActivationError(f"{run_dir} cannot be served: it is not a readable run "
                              "directory (deleted or moved since the page was drawn?). Nothing "
                              "was changed.")
    with audit.audited(database) as session:
        check_admin(session, actor)  # takes the trail's lock: what is served cannot change now
        current = _serving(session, default)
        if run_dir.resolve() == current.run_dir.resolve():
            raise ActivationError(f"{version} is the model in use already.")
        previous = (current.switch.served if current.switch is not None
                    else Served(default, _version(default) or "unreadable"))
        row = audit.append(session, audit.Event(
            actor.username, actor.role, actions.ACTIVATE_MODEL, model_version=version,
            detail={"previous_version": previous.version, "run_dir": str(run_dir),
                    "previous_run_dir": str(previous.run_dir)}))
        return Switch(row.at, actor.username, Served(run_dir, version), previous, row.seq)
