"""The alert store as it was before the incident engine (one alert per fingerprint, outbox, log).

Revision ID: 0001
A database that predates Alembic has exactly these tables; ``Database.migrate`` stamps it 0001 and
upgrades from there, so an existing data dir keeps its alerts and its pending notifications.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("recommended_action", sa.Text, nullable=False, server_default=""),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("published_version", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("alerts_status", "alerts", ["status"])
    op.create_index("alerts_page", "alerts", ["updated_at", "fingerprint"])
    op.create_index("alerts_status_page", "alerts", ["status", "updated_at", "fingerprint"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("notifier", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("outbox_pending", "outbox", ["state", "next_attempt_at"])
    op.create_index("outbox_due", "outbox", ["notifier", "state", "next_attempt_at"])
    op.create_index("outbox_finished", "outbox", ["state", "created_at"])
    op.create_index("outbox_head", "outbox", ["fingerprint", "notifier", "state", "id"])
    op.create_table(
        "notification_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("notifier", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=False),
    )
    op.create_index("notification_log_fp", "notification_log", ["fingerprint"])
    op.create_index("notification_log_sent", "notification_log", ["sent_at"])
    op.create_table("meta", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Integer, nullable=False))
    op.execute("INSERT INTO meta (key, value) VALUES ('alerts_version', 0)")
