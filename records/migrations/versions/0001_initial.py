"""Accounts, the audit trail with its chain head, radiologist feedback, run-time settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(150), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200)),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("failed_sign_ins", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(40), nullable=False, index=True),
        sa.Column("image_sha256", sa.String(64)),
        sa.Column("image_bytes", sa.Integer),
        sa.Column("sop_uid_hash", sa.String(64)),
        sa.Column("model_version", sa.String(100)),
        sa.Column("label", sa.String(60)),
        sa.Column("probabilities", sa.Text),
        sa.Column("refusal_reason", sa.Text),
        sa.Column("latency_ms", sa.Double),
        sa.Column("detail", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("analysis_id", sa.Integer, sa.ForeignKey("audit_events.id"), nullable=False,
                  index=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("agrees", sa.Boolean, nullable=False),
        sa.Column("read_class", sa.String(60), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("analysis_id", "username"),
    )
    settings = op.create_table(
        "app_settings",
        sa.Column("key", sa.String(60), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "last_hash": "0" * 64}])
    # The salt for hashing DICOM SOP Instance UIDs: made once, kept with the data it protects.
    op.bulk_insert(settings, [{"key": "audit_salt", "value": secrets.token_hex(32)}])


def downgrade() -> None:
    for table in ("app_settings", "feedback", "audit_head", "audit_events", "users"):
        op.drop_table(table)
