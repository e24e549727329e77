"""The outcome store: one row per reported career choice.

Revision ID: 0001_outcomes
Revises:
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.tables import Id, UTCDateTime

revision: str = "0001_outcomes"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("week", sa.String(10), nullable=False),
        sa.Column("career", sa.String(100), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=True),
        sa.Column("idempotency_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("model_version", sa.String(120), nullable=True),
        sa.Column("top1_correct", sa.Boolean(), nullable=True),
        sa.Column("log_loss", sa.Float(), nullable=True),
    )
    op.create_index("ix_outcomes_observed_at", "outcomes", ["observed_at"])
    op.create_index("ix_outcomes_received_at", "outcomes", ["received_at"])
    op.create_index("ix_outcomes_subject_hash", "outcomes", ["subject_hash"])
    op.create_index("ix_outcomes_model_version", "outcomes", ["model_version"])


def downgrade() -> None:
    op.drop_table("outcomes")
