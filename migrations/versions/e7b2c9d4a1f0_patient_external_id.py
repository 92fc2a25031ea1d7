"""patient.external_id: the clinic's own id for a patient, unique, for idempotent bulk import

Revision ID: e7b2c9d4a1f0
Revises: e5b7c3a9d1f2
Create Date: 2026-12-02 14:30:00.000000

`followup import` and `POST /api/triage/batch` insert with `ON CONFLICT (external_id) DO NOTHING`: the unique
index makes a rerun (or two imports racing) enroll no one twice. Nullable: patients enrolled by the API, the
intake form or FHIR have none. A plain unique index (NULLs distinct on both databases), so SQLite needs no batch
table rebuild.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7b2c9d4a1f0"
down_revision: str | None = "e5b7c3a9d1f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("patient", sa.Column("external_id", sa.String(), nullable=True))
    op.create_index("ix_patient_external_id", "patient", ["external_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_patient_external_id", table_name="patient")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("external_id")
