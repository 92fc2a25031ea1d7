"""pacing: a bucket row per sender, shared by every dispatcher (followup/services/pacing.py)

Revision ID: e7b2c9d4f1a6
Revises: e7b2c9d4a1f0
Create Date: 2026-12-02 14:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'e7b2c9d4f1a6'
down_revision: str | None = 'e7b2c9d4a1f0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'senderpace',
        sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('tat', sa.Float(), nullable=False),
        sa.Column('granted', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('sender'),
    )


def downgrade() -> None:
    op.drop_table('senderpace')
