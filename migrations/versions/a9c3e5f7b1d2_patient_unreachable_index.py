"""patient: a partial index holding only the unreachable patients still followed up

Revision ID: a9c3e5f7b1d2
Revises: f3a1b2c4d5e6
Create Date: 2026-12-02 18:40:00.000000

The digest's unreachable list, the overview's unreachable count and the roster's "Unreachable" filter read every
patient still followed up through ix_patient_status and filtered on the channels' states (6,219 rows, 4,095
buffers at 100,000 patients; bench/README.md). This index holds only the answer. Its predicate is
models.UNREACHABLE_SQL, as services.roster.unreachable_clause spells it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9c3e5f7b1d2"
down_revision: str | None = "f3a1b2c4d5e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# models.UNREACHABLE_SQL as it was when this migration was written (a migration does not follow later models)
WHERE = (
    "status IN ('active', 'paused', 'escalated')"
    " AND (phone IS NULL OR sms_state <> 'ok') AND (email IS NULL OR email_state <> 'ok')"
)


def upgrade() -> None:
    op.create_index(
        "ix_patient_unreachable", "patient", ["id"], postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE)
    )


def downgrade() -> None:
    op.drop_index("ix_patient_unreachable", table_name="patient")
