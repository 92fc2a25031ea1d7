"""limits: a flood-limit bucket row per sender, shared by every web process (followup/services/limits.py)

Revision ID: b5d7e9f1a3c6
Revises: a9c3e5f7b1d2
Create Date: 2026-12-02 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "b5d7e9f1a3c6"
down_revision: str | None = "a9c3e5f7b1d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limitbucket",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("ended", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_limitbucket_tat"), "limitbucket", ["tat"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_limitbucket_tat"), table_name="limitbucket")
    op.drop_table("limitbucket")
