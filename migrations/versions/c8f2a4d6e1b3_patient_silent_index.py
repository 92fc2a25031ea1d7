"""patient: a partial index on id holding only the patients still followed up who have a silence

Revision ID: c8f2a4d6e1b3
Revises: b5d7e9f1a3c6
Create Date: 2026-12-03 07:45:00.000000

The "Not responding" list (services/silence.newest_silent) reads it newest first and tests each patient until its
page is full: 327 buffers for a page of 50 at 100,000 patients, where the range on ix_patient_status_silent_since
tested every non-responder and sorted them (3,600). The predicate is models.SILENT_SQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8f2a4d6e1b3"
down_revision: str | None = "b5d7e9f1a3c6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "silent_since IS NOT NULL AND status IN ('active', 'paused', 'escalated')"


def upgrade() -> None:
    op.create_index(
        "ix_patient_silent", "patient", ["id"], postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE)
    )


def downgrade() -> None:
    op.drop_index("ix_patient_silent", table_name="patient")
