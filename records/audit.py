"""The audit trail: one append-only row per event, chained and keyed so an edit shows.

Each row's hash is an HMAC-SHA-256, under a key kept outside the database (``audit_key``), of
the previous row's hash and the row's canonical content; the head row carries a MAC of the
last sequence number and hash. Rows written before the key existed (``audit_keyed_from``)
keep their plain SHA-256 and are reported as pre-key. See docs/AUDIT.md. Rows
hold no patient identifier: an image is named by the SHA-256 of its bytes, a DICOM's SOP
Instance UID only as a salted hash. A row that cannot be written raises AuditUnavailable,
and the callers show nothing they could not record (fail closed).

CLI: ``python -m records.audit verify`` and ``python -m records.audit export --start D --end D``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.dicom import looks_like_dicom
from records.actions import EXPORT_AUDIT, VERIFY_AUDIT
from records.audit_key import AuditKeyError, audit_key, keyed_from_marker, mac
from records.db import Database, open_database
from records.roles import ADMIN as ADMIN_ROLE
from records.safe_csv import csv_text
from records.settings import load_settings
from records.tables import GENESIS_HASH, AppSetting, AuditEvent, AuditHead

SALT_KEY = "audit_salt"
KEYED_FROM_KEY = "audit_keyed_from"  # app setting: the signed seq of the first keyed row
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
    """The unkeyed SHA-256 of a pre-key row (anyone can compute it: it proves nothing alone)."""
    return hashlib.sha256((row.prev_hash + canonical_content(row)).encode("utf-8")).hexdigest()


def keyed_row_hash(row: AuditEvent, key: bytes) -> str:
    """The row's hash under the audit key: only a holder of the key can make it."""
    return mac(key, row.prev_hash + canonical_content(row))


def head_mac(key: bytes, seq: int, last_hash: str) -> str:
    """The head's MAC: removing rows from the end and rewinding the head shows without it."""
    return mac(key, f"head:{seq}:{last_hash}")


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
    key = audit_key(load_settings())
    row.row_hash = keyed_row_hash(row, key)
    session.add(row)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(
        last_hash=row.row_hash, mac=head_mac(key, seq, row.row_hash)))
    session.flush()
    return row


def lock(session: Session) -> None:
    """Take the trail's write lock now (the head row), for a check that must not race."""
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))


@contextmanager
def audited(database: Database) -> Iterator[Session]:
    """A transaction whose audit rows and changes commit together or not at all.

    Any database failure inside becomes AuditUnavailable: the caller shows nothing it could
    not record.
    """
    try:
        with database.session() as session, session.begin():
            yield session
    except (SQLAlchemyError, AuditKeyError) as error:
        raise AuditUnavailable(f"the audit trail cannot be written ({type(error).__name__})"
                               ) from error


def record(database: Database, event: Event) -> int:
    """Append one event in its own transaction; returns its row id."""
    with audited(database) as session:
        return append(session, event).id


def count_since(database: Database, action: str, username: str, since: datetime) -> int:
    """How many ``action`` rows ``username`` has written since ``since`` (a rate limit's count)."""
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.username == username,
            AuditEvent.at >= since))


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
    """The result of walking the chain: rows checked, the first broken one if any, and how
    many rows come from before the audit key (checked only against each other)."""

    rows_checked: int
    first_broken_seq: int | None = None
    reason: str = ""
    pre_key_rows: int = 0

    @property
    def intact(self) -> bool:
        return self.first_broken_seq is None

    def summary(self) -> str:
        """One sentence for the page and the CLI."""
        if not self.intact:
            return f"The audit trail is broken at row {self.first_broken_seq}: {self.reason}."
        pre_key = (f"; the first {self.pre_key_rows} were written before the audit key and "
                   "are checked only against each other" if self.pre_key_rows else "")
        return f"The audit trail is intact: {self.rows_checked} rows{pre_key}."


def _rows(database: Database) -> Iterator[AuditEvent]:
    with database.session() as session:
        yield from session.scalars(select(AuditEvent).order_by(AuditEvent.seq)
                                   .execution_options(yield_per=500))


def keyed_from(session: Session, key: bytes) -> int | None:
    """The first row the key signs, from its signed marker; None if missing or forged."""
    marker = session.get(AppSetting, KEYED_FROM_KEY)
    if marker is None:
        return None
    seq = marker.value.split(":", 1)[0]
    if not seq.isdigit() or not hmac.compare_digest(marker.value,
                                                    keyed_from_marker(key, int(seq))):
        return None
    return int(seq)


def is_signed(row: AuditEvent, key: bytes, first_keyed: int | None) -> bool:
    """Whether this one row carries a valid keyed hash: what a reader that acts on a row (the
    model switch the app serves) checks before trusting it; the chain is verify_chain's."""
    return (first_keyed is not None and row.seq >= first_keyed
            and hmac.compare_digest(keyed_row_hash(row, key), row.row_hash))


def verify_chain(database: Database) -> ChainCheck:
    """Recompute every hash in order; name the first row that was changed, removed, added or
    rewritten without the audit key, and check the signed head (a removed last row)."""
    key = audit_key(load_settings())
    with database.session() as session:
        first_keyed = keyed_from(session, key)
    if first_keyed is None:
        return ChainCheck(0, 1, "the record of where the audit key starts is missing or not "
                          "signed with this deployment's key (see docs/AUDIT.md)")
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    for row in _rows(database):
        checked += 1
        if row.seq != expected_seq:
            return ChainCheck(checked, expected_seq, f"row {expected_seq} is missing")
        if row.prev_hash != prev_hash:
            return ChainCheck(checked, row.seq, "its previous hash does not match the row before")
        expected = row_hash(row) if row.seq < first_keyed else keyed_row_hash(row, key)
        if not hmac.compare_digest(expected, row.row_hash):
            reason = ("its content does not match its hash" if row.seq < first_keyed else
                      "its content does not match its keyed hash (changed, or written without "
                      "the audit key)")
            return ChainCheck(checked, row.seq, reason)
        prev_hash, expected_seq = row.row_hash, expected_seq + 1
    with database.session() as session:
        head = session.get(AuditHead, 1)
    pre_key = min(checked, first_keyed - 1)
    if head.seq != checked or head.last_hash != prev_hash:
        return ChainCheck(checked, checked + 1, f"the trail should hold {head.seq} rows",
                          pre_key)
    if checked >= first_keyed and not hmac.compare_digest(head.mac or "",
                                                         head_mac(key, head.seq, prev_hash)):
        return ChainCheck(checked, checked, "the head of the trail is not signed with the "
                          "audit key (rows were removed from the end, or the head was rewritten)",
                          pre_key)
    return ChainCheck(checked, pre_key_rows=pre_key)


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


def verification_event(username: str, role: str, check: ChainCheck) -> Event:
    """The audit row of a chain check, from the page or the CLI alike."""
    return Event(username, role, VERIFY_AUDIT, detail={"intact": check.intact})


def export_event(username: str, role: str, start: date, end: date) -> Event:
    """The audit row of an export of ``start`` to ``end``, from the page or the CLI alike."""
    return Event(username, role, EXPORT_AUDIT, detail={"start": str(start), "end": str(end)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m records.audit", description=__doc__)
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
        record(database, verification_event(CLI_USER, ADMIN_ROLE, check))
        print(check.summary())
        return 0 if check.intact else 1
    sys.stdout.write(export_csv(database, arguments.start, arguments.end))
    record(database, export_event(CLI_USER, ADMIN_ROLE, arguments.start, arguments.end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
