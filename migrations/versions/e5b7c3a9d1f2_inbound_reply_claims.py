"""ingest: reply workers' claims on stored replies, and delivery events stored raw and applied later

Revision ID: e5b7c3a9d1f2
Revises: d1a5c0e2f3b4
Create Date: 2026-12-02 14:40:00.000000

The webhooks now only store what they receive and answer (issue 13):
- reply workers claim stored replies (`inbound.claim_until`); a claim that expires (its worker died) lets another
  worker take the reply. NULL: not claimed.
- Twilio status callbacks and SendGrid events are stored raw in `deliveryevent` (`ref`: our message id as the
  provider echoed it, `sid`: the provider's message id) with `outcome` NULL, and applied in batches by a worker,
  which sets `outcome` (and `message_id` once the message is known; `tries` counts the passes that could not find
  it). The events stored before this migration were applied in their request: `outcome` 'applied'.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'e5b7c3a9d1f2'
down_revision: str | None = 'd1a5c0e2f3b4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = 'outcome IS NULL'


def upgrade() -> None:
    with op.batch_alter_table('inbound') as batch:
        batch.add_column(sa.Column('claim_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('deliveryevent') as batch:
        batch.add_column(sa.Column('ref', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('sid', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('tries', sa.Integer(), nullable=False, server_default='0'))
    op.execute("UPDATE deliveryevent SET outcome = 'applied'")
    op.create_index(
        'ix_deliveryevent_pending', 'deliveryevent', ['tries', 'id'], postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING)
    )


def downgrade() -> None:
    op.drop_index('ix_deliveryevent_pending', table_name='deliveryevent')
    with op.batch_alter_table('deliveryevent') as batch:
        for name in ('tries', 'outcome', 'sid', 'ref'):
            batch.drop_column(name)
    with op.batch_alter_table('inbound') as batch:
        batch.drop_column('claim_until')
