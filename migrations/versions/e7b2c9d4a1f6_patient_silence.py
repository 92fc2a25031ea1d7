"""patient silence: last_reply_at and silent_since, kept by followup/services/silence.py, with their index

Revision ID: e7b2c9d4a1f6
Revises: d1a5c0e2f3b4
Create Date: 2026-12-02 14:40:00.000000

The digest and the dashboard's "Not responding" filter read every check-in and reply (bench/README.md: ~50,000
pages at 100,000 patients). With these columns they read an index range on silent_since. The backfill works both
out from the rows, in the same way as silence.rebuild: the latest reply, and the second check-in sent at or after it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'e7b2c9d4a1f6'
down_revision: str | None = 'd1a5c0e2f3b4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_reply_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('silent_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute(
        'UPDATE patient SET last_reply_at = '
        '(SELECT max(inbound.received_at) FROM inbound WHERE inbound.patient_id = patient.id)'
    )
    op.execute(
        'UPDATE patient SET silent_since = (SELECT message.sent_at FROM message'
        " WHERE message.patient_id = patient.id AND message.kind = 'checkin' AND message.sent_at IS NOT NULL"
        ' AND (patient.last_reply_at IS NULL OR message.sent_at >= patient.last_reply_at)'
        ' ORDER BY message.sent_at LIMIT 1 OFFSET 1)'
    )
    op.create_index('ix_patient_silent_since', 'patient', ['silent_since'])


def downgrade() -> None:
    op.drop_index('ix_patient_silent_since', table_name='patient')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('silent_since')
        batch_op.drop_column('last_reply_at')
