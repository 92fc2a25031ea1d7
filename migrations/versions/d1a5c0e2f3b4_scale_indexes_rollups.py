"""scale: indexes for the queries that scanned whole tables, and the overview's daily rollup table

Revision ID: d1a5c0e2f3b4
Revises: c4f1a2b3d5e6
Create Date: 2026-12-02 11:00:00.000000

Each index is named after the query it serves (bench/scale_db.py measured each one, plans in bench/README.md).
Partial indexes keep only the rows a job still has to visit: replies waiting to be acted on, texts not yet purged,
clinic-wide messages (digests, unreachable-patient alerts), failed messages, check-ins. The partial predicates are
written with literals, and the queries that use them say the same literals (SQLite only matches them that way).
On PostgreSQL, trigram indexes (pg_trgm) serve the patient search's `LIKE '%...%'` on name, email and phone.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd1a5c0e2f3b4'
down_revision: str | None = 'c4f1a2b3d5e6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PURGED = "'[removed after the retention period]'"  # followup.services.privacy.PURGED

PARTIAL = [
    # (index, table, columns, predicate)
    ('ix_inbound_pending', 'inbound', ['received_at'], "status = 'received'"),
    ('ix_inbound_unpurged', 'inbound', ['received_at'], f"body <> {PURGED}"),
    ('ix_inbound_unmatched_sender', 'inbound', ['sender'], 'patient_id IS NULL'),
    ('ix_message_unpurged', 'message', ['created_at'], f"body IS NULL OR body <> {PURGED}"),
    ('ix_message_clinic', 'message', ['template', 'created_at'], 'patient_id IS NULL AND escalation_id IS NULL'),
    ('ix_message_checkin_sent', 'message', ['sent_at'], "kind = 'checkin'"),
    ('ix_message_failed', 'message', ['updated_at'], "status IN ('failed', 'undelivered')"),
]
PLAIN = [
    ('ix_inbound_received_at', 'inbound', ['received_at']),
    ('ix_escalation_status_created', 'escalation', ['status', 'created_at']),
    ('ix_escalation_created_at', 'escalation', ['created_at']),
    ('ix_auditlog_subject', 'auditlog', ['subject']),
    ('ix_auditlog_actor_id', 'auditlog', ['actor', 'id']),
    ('ix_patient_status', 'patient', ['status']),
]
TRIGRAM = [
    ('ix_patient_name_trgm', 'lower(name)'),
    ('ix_patient_email_trgm', 'email'),
    ('ix_patient_phone_trgm', 'phone'),
]


def upgrade() -> None:
    op.create_table(
        'overviewday',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('figure', sa.String(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'figure'),
    )
    for name, table, cols, where in PARTIAL:
        op.create_index(name, table, cols, postgresql_where=sa.text(where), sqlite_where=sa.text(where))
    for name, table, cols in PLAIN:
        op.create_index(name, table, cols)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for name, expr in TRIGRAM:
            op.execute(f'CREATE INDEX {name} ON patient USING gin (({expr}) gin_trgm_ops)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, _ in TRIGRAM:
            op.execute(f'DROP INDEX IF EXISTS {name}')
    for name, table, _ in PLAIN:
        op.drop_index(name, table_name=table)
    for name, table, *_ in PARTIAL:
        op.drop_index(name, table_name=table)
    op.drop_table('overviewday')
