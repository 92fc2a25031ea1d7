"""ingest: a reply worker's claim on a stored reply (inbound.claim_until)

Revision ID: e5b7c3a9d1f2
Revises: d1a5c0e2f3b4
Create Date: 2026-12-02 14:40:00.000000

The webhooks now only store a reply; reply workers claim stored replies (`claim_until`) and act on them. A claim
that expires (its worker died) lets another worker take the reply. NULL: not claimed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "e5b7c3a9d1f2"
down_revision: str | None = "d1a5c0e2f3b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.add_column(sa.Column("claim_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("claim_until")
