"""The database tables, as SQLAlchemy 2 typed models; Alembic migrations create them.

Times are naive UTC datetimes: SQLite and PostgreSQL then give back exactly what was stored,
which the audit trail's hash chain relies on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from model.run_dir import MAX_VERSION_CHARS

GENESIS_HASH = "0" * 64  # the "previous hash" of the first audit row


class Base(DeclarativeBase):
    pass


class User(Base):
    """A local or single-sign-on account; the role decides which pages it sees."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class SignInThrottle(Base):
    """Failed sign-ins of one typed name from one client, both as salted hashes: the delay
    before the next try grows with them, for that pair only (a stranger elsewhere cannot
    lock the account's owner out)."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (UniqueConstraint("name_hash", "client_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name_hash: Mapped[str] = mapped_column(String(64), index=True)
    client_hash: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int]
    blocked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class AuditEvent(Base):
    """One event, appended and never changed; ``row_hash`` chains it to the row before."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(unique=True)  # position in the chain, from 1
    at: Mapped[datetime] = mapped_column(index=True)
    username: Mapped[str] = mapped_column(String(150))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40), index=True)
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    image_bytes: Mapped[int | None]
    sop_uid_hash: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(MAX_VERSION_CHARS))
    label: Mapped[str | None] = mapped_column(String(60))
    probabilities: Mapped[str | None] = mapped_column(Text)  # canonical JSON
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    detail: Mapped[str | None] = mapped_column(Text)  # canonical JSON of anything else
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AnalysisFeatures(Base):
    """One analysed film's pooled features (float16 bytes) beside its audit row: what the batch
    shift check (model.shift) compares with the training films. No image, no identifier."""

    __tablename__ = "analysis_features"

    analysis_id: Mapped[int] = mapped_column(ForeignKey("audit_events.id"), primary_key=True)
    features: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHead(Base):
    """The single row that serialises appends: the last sequence number and hash."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int]
    last_hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))  # HMAC of (seq, last_hash); see audit_key


class Feedback(Base):
    """A radiologist's reading of one analysis: agree or not, the class read, a note."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("analysis_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("audit_events.id"), index=True)
    username: Mapped[str] = mapped_column(String(150))
    agrees: Mapped[bool]
    read_class: Mapped[str] = mapped_column(String(60))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AppSetting(Base):
    """Settings an admin changes at run time, and the audit trail's salt."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

