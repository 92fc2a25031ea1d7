"""integration and operations: outbound webhook outbox, voice calls, worker heartbeats, metric indexes

Revision ID: c4d8e2f1a7b3
Revises: c4e8a2d61f3b
Create Date: 2026-12-02 11:00:00.000000

`webhookdelivery` is the transactional outbox of signed outbound webhooks (one row per event and endpoint),
`voicecall` the phone calls for unacknowledged emergencies, `workerheartbeat` one row per scheduler process
(read by /readyz). The indexes keep /metrics' counts cheap at scrape time. The new tables with integer ids are
AUTOINCREMENT on SQLite, like every other since c4e8a2d61f3b (ids never reused).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'c4d8e2f1a7b3'
down_revision: str | None = 'c4e8a2d61f3b'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhookdelivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('endpoint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=True),
        sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('last_latency_ms', sa.Integer(), nullable=True),
        sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id', 'endpoint', name='uq_webhookdelivery_event_endpoint'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('webhookdelivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhookdelivery_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhookdelivery_patient_id'), ['patient_id'], unique=False)

    op.create_table(
        'voicecall',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('escalation_id', sa.Integer(), nullable=False),
        sa.Column('round', sa.Integer(), nullable=False),
        sa.Column('tier_index', sa.Integer(), nullable=False),
        sa.Column('to', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('provider_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('digits', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('placed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['escalation_id'], ['escalation.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('escalation_id', 'round', 'to', name='uq_voicecall_round_to'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('voicecall', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voicecall_escalation_id'), ['escalation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_voicecall_provider_id'), ['provider_id'], unique=False)

    op.create_table(
        'workerheartbeat',
        sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('host', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('last_pass_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('passes', sa.Integer(), nullable=False),
        sa.Column('last_claimed', sa.Integer(), nullable=False),
        sa.Column('last_sent', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('worker'),
    )
    with op.batch_alter_table('workerheartbeat', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workerheartbeat_last_pass_at'), ['last_pass_at'], unique=False)

    op.create_index('ix_message_status_channel', 'message', ['status', 'channel'], unique=False)
    op.create_index('ix_escalation_status', 'escalation', ['status'], unique=False)
    op.create_index('ix_inbound_status', 'inbound', ['status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_inbound_status', table_name='inbound')
    op.drop_index('ix_escalation_status', table_name='escalation')
    op.drop_index('ix_message_status_channel', table_name='message')
    with op.batch_alter_table('workerheartbeat', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workerheartbeat_last_pass_at'))
    op.drop_table('workerheartbeat')
    with op.batch_alter_table('voicecall', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voicecall_provider_id'))
        batch_op.drop_index(batch_op.f('ix_voicecall_escalation_id'))
    op.drop_table('voicecall')
    with op.batch_alter_table('webhookdelivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhookdelivery_patient_id'))
        batch_op.drop_index('ix_webhookdelivery_due')
    op.drop_table('webhookdelivery')
