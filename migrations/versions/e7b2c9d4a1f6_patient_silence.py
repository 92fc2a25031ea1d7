"""patient silence: last_reply_at and silent_since, kept by followup/services/silence.py, with their index

Revision ID: e7b2c9d4a1f6
Revises: e7b2c9d4f1a6
Create Date: 2026-12-02 14:40:00.000000

The digest and the dashboard's "Not responding" filter read every check-in and reply (bench/README.md: ~50,000
pages at 100,000 patients). With these columns they read, per status still followed up, an index range on silent_since. The backfill works both
out from the rows, in the same way as silence.rebuild: the latest reply, and the second check-in sent at or after it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'e7b2c9d4a1f6'
down_revision: str | None = 'e7b2c9d4f1a6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_reply_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('silent_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    # Set-based (UPDATE ... FROM, window function: PostgreSQL, SQLite >= 3.33): one pass over each table. The same
    # statements fill bench/scale_db.py's databases (a correlated subquery per patient took minutes there).
    op.execute(
        'UPDATE patient SET last_reply_at = r.at FROM (SELECT patient_id, max(received_at) AS at FROM inbound'
        ' WHERE patient_id IS NOT NULL GROUP BY patient_id) AS r WHERE r.patient_id = patient.id'
    )
    op.execute(
        'UPDATE patient SET silent_since = c.sent_at FROM (SELECT m.patient_id, m.sent_at, row_number() OVER'
        ' (PARTITION BY m.patient_id ORDER BY m.sent_at) AS n FROM message m JOIN patient p ON p.id = m.patient_id'
        " WHERE m.kind = 'checkin' AND m.sent_at IS NOT NULL"
        ' AND (p.last_reply_at IS NULL OR m.sent_at >= p.last_reply_at)) AS c'
        ' WHERE c.patient_id = patient.id AND c.n = 2'
    )
    op.create_index('ix_patient_status_silent_since', 'patient', ['status', 'silent_since'])


def downgrade() -> None:
    op.drop_index('ix_patient_status_silent_since', table_name='patient')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('silent_since')
        batch_op.drop_column('last_reply_at')
