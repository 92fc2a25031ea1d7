"""contacts confirmed before use; ids never reused; booking tokens bound to a per-escalation nonce

Revision ID: c4e8a2d61f3b
Revises: b7e3c1d2a9f0
Create Date: 2026-12-02 11:00:00.000000

Issue 11. Contacts from the public form are confirmed before anything but the confirmation goes to them
(`patient.sms_confirmed_at`, `patient.email_confirmed_at`, the `contactconfirmation` table); contacts already held
were entered before double opt-in and count as confirmed from when the patient was created. On SQLite every
table with an integer id is rebuilt AUTOINCREMENT, so an erased row's id is never handed out again (PostgreSQL's
sequences never reuse one). Each escalation gets a random nonce that its booking tokens bind.
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'c4e8a2d61f3b'
down_revision: str | None = 'b7e3c1d2a9f0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents before children, so that each rebuilt table's foreign keys point at a table already rebuilt.
ID_TABLES = (
    'patient',
    'apitoken',
    'auditlog',
    'staffuser',
    'triage',
    'consent',
    'escalation',
    'message',
    'deliveryevent',
    'inbound',
    'staffsession',
    'appointment',
    'escalationalert',
)
PARTIAL_INDEXES = {  # batch mode does not carry a partial index's WHERE over on SQLite: made again after
    'appointment': (
        ('uq_appointment_slot_booked', ['starts_at']),
        ('uq_appointment_escalation_booked', ['escalation_id']),
    ),
}
BOOKED_ONLY = sa.text("status = 'booked'")


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('email_confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute('UPDATE patient SET sms_confirmed_at = created_at WHERE phone IS NOT NULL')
    op.execute('UPDATE patient SET email_confirmed_at = created_at WHERE email IS NOT NULL')

    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    for (escalation_id,) in bind.execute(sa.text('SELECT id FROM escalation')).all():
        bind.execute(
            sa.text('UPDATE escalation SET nonce = :n WHERE id = :i'), {'n': secrets.token_hex(8), 'i': escalation_id}
        )
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.alter_column('nonce', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)

    op.create_table(
        'contactconfirmation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=True),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('address_ref', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('requested_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('contactconfirmation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contactconfirmation_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contactconfirmation_address_ref'), ['address_ref'], unique=False)

    if bind.dialect.name != 'sqlite':
        return  # PostgreSQL: SERIAL ids come from sequences, which never hand a number out twice
    for table in ID_TABLES:
        partial = PARTIAL_INDEXES.get(table, ())
        for name, _ in partial:
            op.drop_index(name, table_name=table)
        with op.batch_alter_table(table, recreate='always', table_kwargs={'sqlite_autoincrement': True}):
            pass
        for name, columns in partial:
            op.create_index(name, table, columns, unique=True, sqlite_where=BOOKED_ONLY)


def downgrade() -> None:
    with op.batch_alter_table('contactconfirmation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contactconfirmation_address_ref'))
        batch_op.drop_index(batch_op.f('ix_contactconfirmation_patient_id'))
    op.drop_table('contactconfirmation')
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.drop_column('nonce')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('email_confirmed_at')
        batch_op.drop_column('sms_confirmed_at')
