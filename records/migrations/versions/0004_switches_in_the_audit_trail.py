"""Model switches live in the keyed audit trail only: the ``model_activations`` table goes.

Every row of it was written in the same transaction as its audit row (``admin:activate-model``
or ``admin:restore-previous-model``), which holds the same run directories and versions, so
nothing is lost; the app now serves the newest switch whose audit row carries a valid keyed
hash (records/model_activations.py). The downgrade rebuilds the table from those rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SWITCH_ACTIONS = ("admin:activate-model", "admin:restore-previous-model")


def upgrade() -> None:
    op.drop_table("model_activations")


def downgrade() -> None:
    table = op.create_table(
        "model_activations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("run_dir", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("previous_run_dir", sa.Text, nullable=False),
        sa.Column("previous_version", sa.String(100), nullable=False),
    )
    events = sa.table("audit_events", sa.column("seq", sa.Integer), sa.column("at", sa.DateTime),
                      sa.column("username", sa.String), sa.column("action", sa.String),
                      sa.column("model_version", sa.String), sa.column("detail", sa.Text))
    rows = op.get_bind().execute(sa.select(events).where(events.c.action.in_(SWITCH_ACTIONS))
                                 .order_by(events.c.seq))
    switches = [(row, json.loads(row.detail)) for row in rows]
    op.bulk_insert(table, [{"at": row.at, "username": row.username,
                            "run_dir": detail["run_dir"], "model_version": row.model_version,
                            "previous_run_dir": detail["previous_run_dir"],
                            "previous_version": detail["previous_version"]}
                           for row, detail in switches])
