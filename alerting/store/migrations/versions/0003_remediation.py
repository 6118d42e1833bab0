"""Remediation: runs and their steps, the XID ladder's episodes, the hash-chained audit log.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

TEXT, FLOAT, INT = sa.Text, sa.Float, sa.Integer


def upgrade() -> None:
    op.create_table(
        "remediation_runs",
        sa.Column("id", TEXT, primary_key=True),
        sa.Column("incident_key", TEXT, nullable=False),
        sa.Column("incident_id", INT),
        sa.Column("runbook", TEXT, nullable=False),
        sa.Column("mode", TEXT, nullable=False),
        sa.Column("state", TEXT, nullable=False),
        sa.Column("labels", TEXT, nullable=False, server_default="{}"),
        sa.Column("plan", TEXT, nullable=False, server_default="{}"),
        sa.Column("created_at", FLOAT, nullable=False),
        sa.Column("updated_at", FLOAT, nullable=False),
        sa.Column("next_at", FLOAT),
        sa.Column("verify_since", FLOAT),
        sa.Column("detail", TEXT, nullable=False, server_default="{}"),
    )
    op.create_index("remediation_runs_incident", "remediation_runs", ["incident_key", "runbook"], unique=True)
    op.create_index("remediation_runs_due", "remediation_runs", ["next_at"])
    op.create_table(
        "remediation_steps",
        sa.Column("key", TEXT, primary_key=True),
        sa.Column("run_id", TEXT, nullable=False),
        sa.Column("phase", TEXT, nullable=False),
        sa.Column("idx", INT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("action", TEXT, nullable=False),
        sa.Column("params", TEXT, nullable=False, server_default="{}"),
        sa.Column("target", TEXT),
        sa.Column("job", TEXT),
        sa.Column("state", TEXT, nullable=False),
        sa.Column("attempts", INT, nullable=False, server_default="0"),
        sa.Column("started_at", FLOAT),
        sa.Column("finished_at", FLOAT),
        sa.Column("result", TEXT, nullable=False, server_default="{}"),
    )
    op.create_index("remediation_steps_run", "remediation_steps", ["run_id", "phase", "idx"])
    op.create_index("remediation_steps_recent", "remediation_steps", ["started_at"])
    op.create_table(
        "xid_episodes",
        sa.Column("gpu", TEXT, primary_key=True),
        sa.Column("code", INT, primary_key=True),
        sa.Column("incident_key", TEXT, primary_key=True),
        sa.Column("at", FLOAT, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", INT, primary_key=True, autoincrement=False),
        sa.Column("at", FLOAT, nullable=False),
        sa.Column("actor", TEXT, nullable=False),
        sa.Column("kind", TEXT, nullable=False),
        sa.Column("run_id", TEXT),
        sa.Column("record", TEXT, nullable=False),
        sa.Column("prev_hash", TEXT, nullable=False),
        sa.Column("hash", TEXT, nullable=False),
    )
    op.create_index("audit_log_run", "audit_log", ["run_id"])


def downgrade() -> None:
    for table in ("audit_log", "xid_episodes", "remediation_steps", "remediation_runs"):
        op.drop_table(table)
