"""patient: a partial index on (id, silent_since) holding only the patients still followed up who have a silence

Revision ID: c8f2a4d6e1b3
Revises: b5d7e9f1a3c6
Create Date: 2026-12-03 07:45:00.000000

The "Not responding" list and the digest (services/silence.newest_silent) read it newest first, an index-only range
of 200 candidates at a time, and test each by primary key until the page is full, where the range on
ix_patient_status_silent_since tested every non-responder and sorted them (3,600 buffers at 100,000 patients for
the page, as many for its count). The predicate is models.SILENT_SQL.
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
        "ix_patient_silent", "patient", ["id", "silent_since"], postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE)
    )


def downgrade() -> None:
    op.drop_index("ix_patient_silent", table_name="patient")
