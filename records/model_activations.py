"""Which model the app serves: an admin switches it to an adapted run directory (the Sites page)
and back, each switch stored and audited with both versions.

The newest row of ``model_activations`` names the run directory in use; with none, the app
serves the settings' model (``CXR_MODEL_DIR``, else the shipped one). Rows are never changed
or removed, so every earlier model stays named, and going back is one more switch. In
model-server mode (``CXR_MODEL_URL``) the server decides the model: a switch here is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from records import actions, audit
from records.accounts import Actor
from records.db import Database
from records.tables import ModelActivation


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
    """One activation: when, by whom, from which model to which."""

    at: datetime
    username: str
    served: Served
    previous: Served


def _switch(row: ModelActivation) -> Switch:
    return Switch(row.at, row.username, Served(Path(row.run_dir), row.model_version),
                  Served(Path(row.previous_run_dir), row.previous_version))


def switches(database: Database) -> list[Switch]:
    """Every switch, oldest first (Monitoring marks each)."""
    with database.session() as session:
        rows = session.scalars(select(ModelActivation).order_by(ModelActivation.id)).all()
        return [_switch(row) for row in rows]


def latest_switch(database: Database) -> Switch | None:
    with database.session() as session:
        row = session.scalar(select(ModelActivation).order_by(ModelActivation.id.desc())
                             .limit(1))
        return None if row is None else _switch(row)


def active_run_dir(database: Database, default: Path) -> Path:
    """The run directory to serve: the newest switch's, else ``default`` (the settings')."""
    switch = latest_switch(database)
    return default if switch is None else switch.served.run_dir


def activate(database: Database, actor: Actor, target: Served, current: Served,
             model_url: str | None = None, action: str = actions.ACTIVATE_MODEL) -> Switch:
    """Serve ``target`` instead of ``current``: one row and its audit row in one transaction.

    ActivationError in model-server mode, or when ``target`` is what is served already."""
    if model_url:
        raise ActivationError(SERVER_MODE)
    if target.run_dir.resolve() == current.run_dir.resolve():
        raise ActivationError(f"{target.version} is the model in use already.")
    now = audit.now_utc()
    with audit.audited(database) as session:
        session.add(ModelActivation(at=now, username=actor.username, run_dir=str(target.run_dir),
                                    model_version=target.version,
                                    previous_run_dir=str(current.run_dir),
                                    previous_version=current.version))
        audit.append(session, audit.Event(
            actor.username, actor.role, action, model_version=target.version,
            detail={"previous_version": current.version, "run_dir": str(target.run_dir),
                    "previous_run_dir": str(current.run_dir)}))
    return Switch(now, actor.username, target, current)


def restore_previous(database: Database, actor: Actor, model_url: str | None = None) -> Switch:
    """Go back to the model the newest switch replaced (itself audited, with both versions)."""
    switch = latest_switch(database)
    if switch is None:
        raise ActivationError("No model has been switched yet: there is no previous one.")
    return activate(database, actor, switch.previous, switch.served, model_url,
                    actions.RESTORE_MODEL)
