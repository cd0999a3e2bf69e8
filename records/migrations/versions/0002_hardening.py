"""Hardening: sign-in delays per typed name and client (no account-wide lockout), and the
audit trail keyed: a MAC of its head, and the signed number of the first keyed row (the rows
already there stay verifiable as "pre-key").

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from records.audit_key import audit_key, keyed_from_marker
from records.settings import load_settings

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_throttle",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name_hash", sa.String(64), nullable=False, index=True),
        sa.Column("client_hash", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("blocked_until", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name_hash", "client_hash"),
    )
    with op.batch_alter_table("users") as users:
        users.drop_column("failed_sign_ins")
        users.drop_column("locked_until")
    with op.batch_alter_table("audit_head") as head:
        head.add_column(sa.Column("mac", sa.String(64)))
    head = sa.table("audit_head", sa.column("id"), sa.column("seq"))
    last_seq = op.get_bind().execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar_one()
    settings = sa.table("app_settings", sa.column("key"), sa.column("value"))
    op.bulk_insert(settings, [{"key": "audit_keyed_from",
                               "value": keyed_from_marker(audit_key(load_settings()),
                                                          last_seq + 1)}])


def downgrade() -> None:
    settings = sa.table("app_settings", sa.column("key"))
    op.execute(settings.delete().where(settings.c.key == "audit_keyed_from"))
    with op.batch_alter_table("audit_head") as head:
        head.drop_column("mac")
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("failed_sign_ins", sa.Integer, nullable=False,
                                   server_default="0"))
        users.add_column(sa.Column("locked_until", sa.DateTime))
    op.drop_table("sign_in_throttle")
