"""An audit row forged as someone with write access to the database but not the audit key would:
the trail's own unkeyed hash, the head moved on. Readers that act on a row (a model switch, an
accepted validation) must not honour it, and ``python -m records.audit verify`` must name it."""

from __future__ import annotations

from sqlalchemy import update

from records import audit
from records.db import Database
from records.tables import AuditEvent, AuditHead


def forge_row(database: Database, action: str, model_version: str, detail: dict,
              username: str = "ada") -> int:
    """Append the forged row; returns its ``seq``."""
    with database.session() as session, session.begin():
        head = session.get(AuditHead, 1)
        row = AuditEvent(seq=head.seq + 1, at=audit.now_utc(), username=username, role="admin",
                         action=action, model_version=model_version,
                         detail=audit.canonical_json(detail), prev_hash=head.last_hash)
        row.row_hash = audit.row_hash(row)
        session.add(row)
        session.execute(update(AuditHead).values(seq=row.seq, last_hash=row.row_hash))
    return row.seq
