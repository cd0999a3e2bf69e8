"""Radiologists' readings of analyses: agree or not, the class they read, an optional note.

Stored against the analysis's audit row, editable by its author for a day (then it is part of
the record), and every save is itself an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from records import actions, audit
from records.accounts import Actor
from records.db import Database
from records.settings import Settings
from records.tables import AuditEvent, Feedback


class FeedbackError(ValueError):
    """Feedback that cannot be saved; the message is for a person."""


@dataclass(frozen=True)
class Reading:
    """One radiologist's feedback on one analysis."""

    analysis_id: int
    username: str
    agrees: bool
    read_class: str
    note: str
    created_at: datetime
    updated_at: datetime


def _reading(row: Feedback) -> Reading:
    return Reading(row.analysis_id, row.username, row.agrees, row.read_class, row.note,
                   row.created_at, row.updated_at)


def reading_for(database: Database, analysis_id: int, username: str) -> Reading | None:
    with database.session() as session:
        row = session.scalar(select(Feedback).where(Feedback.analysis_id == analysis_id,
                                                    Feedback.username == username))
        return None if row is None else _reading(row)


def editable(reading: Reading, now: datetime, settings: Settings) -> bool:
    return now - reading.created_at <= timedelta(hours=settings.feedback_edit_hours)


def save_reading(database: Database, settings: Settings, actor: Actor, analysis_id: int,
                 agrees: bool, read_class: str | None, note: str = "",
                 now: datetime | None = None) -> Reading:
    """Store (or, within the edit window, change) the actor's reading of an analysis.

    Agreeing means reading the model's class; disagreeing needs the class read.
    """
    now = now or audit.now_utc()
    with audit.audited(database) as session:
        analysis = session.get(AuditEvent, analysis_id)
        if analysis is None or analysis.action != actions.ANALYSIS:
            raise FeedbackError("There is no analysis to give feedback on.")
        if agrees:
            read_class = analysis.label
        elif not read_class:
            raise FeedbackError("Choose the class you read.")
        row = session.scalar(select(Feedback).where(Feedback.analysis_id == analysis_id,
                                                    Feedback.username == actor.username))
        if row is None:
            row = Feedback(analysis_id=analysis_id, username=actor.username, created_at=now)
            session.add(row)
        elif not editable(_reading(row), now, settings):
            raise FeedbackError(f"Feedback can be changed for {settings.feedback_edit_hours:g} "
                                "hours; this one is now part of the record.")
        row.agrees, row.read_class, row.note, row.updated_at = agrees, read_class, note, now
        session.flush()
        audit.append(session, audit.Event(
            actor.username, actor.role, actions.FEEDBACK, image_sha256=analysis.image_sha256,
            model_version=analysis.model_version, label=read_class,
            detail={"analysis_id": analysis_id, "agrees": agrees, "note_chars": len(note)}))
        return _reading(row)


def labelled_images(database: Database) -> dict[str, str | None]:
    """Image SHA-256 -> the class radiologists read; None where their readings differ."""
    query = (select(AuditEvent.image_sha256, Feedback.read_class)
             .join(AuditEvent, Feedback.analysis_id == AuditEvent.id)
             .where(AuditEvent.image_sha256.is_not(None)))
    labels: dict[str, str | None] = {}
    with database.session() as session:
        for sha256, read_class in session.execute(query):
            known = labels.get(sha256, read_class)
            labels[sha256] = read_class if known == read_class else None
    return labels
