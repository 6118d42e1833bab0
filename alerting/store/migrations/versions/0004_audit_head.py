"""The audit log's head (the newest record's seq and hash), kept apart from the log it vouches for.

A chain alone cannot show that its newest records were cut off; the head, written in the same
transaction as every record, can. A store from before this revision gets its head from its log.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
    )
    last = op.get_bind().execute(sa.text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")).first()
    if last is not None:
        op.bulk_insert(head, [{"id": 1, "seq": last.seq, "hash": last.hash}])


def downgrade() -> None:
    op.drop_table("audit_head")
