"""Model activations: which run directory the app serves, switched by an admin on the Sites
page, with the one it replaced (the newest row is in use; older rows are the history).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_activations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("run_dir", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("previous_run_dir", sa.Text, nullable=False),
        sa.Column("previous_version", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_activations")
