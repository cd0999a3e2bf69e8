"""Analysis features: each analysed film's pooled features (float16 bytes), kept beside its
audit row for the batch shift check (model.shift) on the Sites and Monitoring pages.

A table of its own, not an audit column: the audit rows' hashed content stays as it was, and
the vectors, which identify nobody (docs/GOING_LIVE.md), can be purged without breaking the chain.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_features",
        sa.Column("analysis_id", sa.Integer, sa.ForeignKey("audit_events.id"), primary_key=True),
        sa.Column("features", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("analysis_features")
