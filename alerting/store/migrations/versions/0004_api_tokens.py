"""API tokens: who may call the alerting API and the web UI, with which role.

Only a token's SHA-256 is stored, beside its public prefix (how it is found and shown); a revoked
token is kept for audit.

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"  # after the remediation tables; 0005 (the audit head) follows

TEXT, FLOAT = sa.Text, sa.Float


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("prefix", TEXT, primary_key=True),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("role", TEXT, nullable=False),
        sa.Column("digest", TEXT, nullable=False),
        sa.Column("created_at", FLOAT, nullable=False),
        sa.Column("created_by", TEXT, nullable=False),
        sa.Column("revoked_at", FLOAT),
        sa.Column("revoked_by", TEXT),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
