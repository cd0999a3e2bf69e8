"""The audit trail: one append-only row per event, chained by SHA-256 so an edit shows.

Each row's hash is SHA-256 of the previous row's hash and the row's canonical content. Rows
hold no patient identifier: an image is named by the SHA-256 of its bytes, a DICOM's SOP
Instance UID only as a salted hash. A row that cannot be written raises AuditUnavailable,
and the callers show nothing they could not record (fail closed).

CLI: ``python -m webapp.audit verify`` and ``python -m webapp.audit export --start D --end D``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.dicom import looks_like_dicom
from webapp.db import Database, open_database
from webapp.roles import ADMIN as ADMIN_ROLE
from webapp.safe_csv import csv_text
from webapp.settings import load_settings
from webapp.tables import GENESIS_HASH, AppSetting, AuditEvent, AuditHead

SIGN_IN = "sign-in"
FAILED_SIGN_IN = "failed sign-in"
SIGN_OUT = "sign-out"
ANALYSIS = "analysis"
REFUSAL = "refusal"
HEATMAP_VIEWED = "heatmap class viewed"
DOWNLOAD = "download"
FEEDBACK = "feedback"
ADMIN = "admin:"  # prefix of every admin action: "admin:create-account", ...
SALT_KEY = "audit_salt"
CLI_USER = "command line"  # who the admin CLIs act as; the OS account is IT's business
# The columns that are hashed and exported, in this order.
CONTENT_COLUMNS = ("seq", "at", "username", "role", "action", "image_sha256", "image_bytes",
                   "sop_uid_hash", "model_version", "label", "probabilities", "refusal_reason",
                   "latency_ms", "detail", "prev_hash")


class AuditUnavailable(RuntimeError):
    """The audit trail cannot be written, so nothing that needs it may happen."""


@dataclass(frozen=True)
class Event:
    """What happened, by whom; the optional fields describe an image and what the model said."""

    username: str
    role: str
    action: str
    image_sha256: str | None = None
    image_bytes: int | None = None
    sop_uid_hash: str | None = None
    model_version: str | None = None
    label: str | None = None
    probabilities: dict[str, float] | None = None
    refusal_reason: str | None = None
    latency_ms: float | None = None
    detail: dict | None = None


def now_utc() -> datetime:
    """Naive UTC, as every table stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def canonical_json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def canonical_content(row: AuditEvent) -> str:
    """The row as one deterministic string: what its hash covers."""
    content = {name: getattr(row, name) for name in CONTENT_COLUMNS}
    content["at"] = row.at.isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":"))


def row_hash(row: AuditEvent) -> str:
    return hashlib.sha256((row.prev_hash + canonical_content(row)).encode("utf-8")).hexdigest()


def append(session: Session, event: Event) -> AuditEvent:
    """Append one event inside the caller's transaction, so a change and its row commit together.

    Bumping the single head row first takes the write lock (SQLite) or row lock (PostgreSQL),
    so concurrent appends queue up and the chain never forks.
    """
    seq, prev_hash = session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.last_hash)
    ).one()
    values = {field.name: getattr(event, field.name) for field in fields(Event)}
    values["probabilities"] = canonical_json(event.probabilities)
    values["detail"] = canonical_json(event.detail)
    row = AuditEvent(seq=seq, at=now_utc(), prev_hash=prev_hash, **values)
    row.row_hash = row_hash(row)
    session.add(row)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=row.row_hash))
    session.flush()
    return row


@contextmanager
def audited(database: Database) -> Iterator[Session]:
    """A transaction whose audit rows and changes commit together or not at all.

    Any database failure inside becomes AuditUnavailable: the caller shows nothing it could
    not record.
    """
    try:
        with database.session() as session, session.begin():
            yield session
    except SQLAlchemyError as error:
        raise AuditUnavailable(f"the audit trail cannot be written ({type(error).__name__})"
                               ) from error


def record(database: Database, event: Event) -> int:
    """Append one event in its own transaction; returns its row id."""
    with audited(database) as session:
        return append(session, event).id


def image_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def audit_salt(database: Database) -> str:
    with database.session() as session:
        return session.get(AppSetting, SALT_KEY).value


def sop_uid_hash(database: Database, data: bytes, name: str = "") -> str | None:
    """The salted SHA-256 of a DICOM's SOP Instance UID (None for other images): the same
    image matches itself without the UID being stored."""
    if not looks_like_dicom(data, name):
        return None
    try:
        dataset = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True,
                          specific_tags=["SOPInstanceUID"])
    except (InvalidDicomError, ValueError, EOFError, OSError):  # hostile input: no UID then
        return None
    return salted_uid_hash(database, str(dataset.get("SOPInstanceUID", "") or ""))


def salted_uid_hash(database: Database, uid: str) -> str | None:
    """The salted SHA-256 of a UID (None when empty), for images known by UID (the PACS)."""
    if not uid:
        return None
    return hashlib.sha256((audit_salt(database) + uid).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """The result of walking the chain: rows checked and the first broken one, if any."""

    rows_checked: int
    first_broken_seq: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.first_broken_seq is None


def _rows(database: Database) -> Iterator[AuditEvent]:
    with database.session() as session:
        yield from session.scalars(select(AuditEvent).order_by(AuditEvent.seq)
                                   .execution_options(yield_per=500))


def verify_chain(database: Database) -> ChainCheck:
    """Recompute every hash in order; name the first row that was changed, removed or added."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    for row in _rows(database):
        checked += 1
        if row.seq != expected_seq:
            return ChainCheck(checked, expected_seq, f"row {expected_seq} is missing")
        if row.prev_hash != prev_hash:
            return ChainCheck(checked, row.seq, "its previous hash does not match the row before")
        if row_hash(row) != row.row_hash:
            return ChainCheck(checked, row.seq, "its content does not match its hash")
        prev_hash, expected_seq = row.row_hash, expected_seq + 1
    with database.session() as session:
        head = session.get(AuditHead, 1)
    if head.seq != checked:
        return ChainCheck(checked, checked + 1, f"the trail should hold {head.seq} rows")
    return ChainCheck(checked)


def export_csv(database: Database, start: date, end: date) -> str:
    """Every row from ``start`` to ``end`` (inclusive, UTC days) as CSV text, with its hash."""
    columns = [*CONTENT_COLUMNS, "row_hash"]
    begin = datetime.combine(start, datetime.min.time())
    finish = datetime.combine(end + timedelta(days=1), datetime.min.time())
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.at >= begin,
                                                        AuditEvent.at < finish)
                               .order_by(AuditEvent.seq))
        return csv_text(columns, ([getattr(row, name) for name in columns] for row in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.audit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="check the hash chain; name the first broken row")
    export = commands.add_parser("export", help="write a date range as CSV to stdout")
    export.add_argument("--start", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    export.add_argument("--end", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    arguments = parser.parse_args(argv)
    settings = load_settings()
    database = open_database(settings.database_url, settings.sqlite_busy_seconds)
    if arguments.command == "verify":
        check = verify_chain(database)
        record(database, Event(CLI_USER, ADMIN_ROLE, ADMIN + "verify-audit",
                               detail={"intact": check.intact}))
        if check.intact:
            print(f"The audit trail is intact: {check.rows_checked} rows.")
            return 0
        print(f"The audit trail is broken at row {check.first_broken_seq}: {check.reason}.")
        return 1
    sys.stdout.write(export_csv(database, arguments.start, arguments.end))
    record(database, Event(CLI_USER, ADMIN_ROLE, ADMIN + "export-audit",
                           detail={"start": str(arguments.start), "end": str(arguments.end)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
