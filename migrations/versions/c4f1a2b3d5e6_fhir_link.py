"""fhir: the Patient identifiers that FHIR transactions enrolled

Revision ID: c4f1a2b3d5e6
Revises: c4d8e2f1a7b3
Create Date: 2026-12-02 10:45:00.000000

A transaction Bundle posted to /fhir is idempotent on its Patient's identifier: `fhirlink` keeps each identifier
(unique), the patient it enrolled, and the digest of the submission that last triaged them.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'c4f1a2b3d5e6'
down_revision: str | None = 'c4d8e2f1a7b3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'fhirlink',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('system', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('triage_id', sa.Integer(), nullable=False),
        sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.id']),
        sa.ForeignKeyConstraint(['triage_id'], ['triage.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('system', 'value', name='uq_fhirlink_identifier'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('fhirlink', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fhirlink_patient_id'), ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fhirlink', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fhirlink_patient_id'))
    op.drop_table('fhirlink')
