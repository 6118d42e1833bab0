"""The incident engine: incidents, members, timeline, notification groups, stage history, silences,
approvals; alerts know their incident; outbox and log rows are keyed by the dedup key.

Revision ID: 0002
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TEXT, FLOAT, INT = sa.Text, sa.Float, sa.Integer


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The store bumps meta.alerts_version itself now, the same way on every database.
        for trigger in ("alerts_version_insert", "alerts_version_update", "alerts_version_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    _alerts()
    _rekey("outbox", "outbox_head", ["key", "notifier", "state", "id"])
    _rekey("notification_log", "notification_log_fp", ["key"])
    op.create_index("notification_log_incident", "notification_log", ["incident_id"])
    _incidents()
    _notifications()
    _records()


def _alerts() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("incident_id", INT))
        batch.add_column(sa.Column("role", TEXT))
        batch.add_column(sa.Column("muted", TEXT))
        batch.add_column(sa.Column("source", TEXT, nullable=False, server_default="detection"))
        batch.add_column(sa.Column("generator_url", TEXT))
        batch.add_column(sa.Column("alertname", TEXT, nullable=False, server_default=""))
    op.create_index("alerts_incident", "alerts", ["incident_id"])
    op.create_index("alerts_firing_name", "alerts", ["status", "alertname"])
    bind = op.get_bind()  # alertname is labels["alertname"], kept in a column for indexed lookups
    rows = bind.execute(sa.text("SELECT fingerprint, labels FROM alerts")).fetchall()
    names = [{"fp": fp, "name": str(json.loads(labels).get("alertname", ""))} for fp, labels in rows]
    if names:
        bind.execute(sa.text("UPDATE alerts SET alertname = :name WHERE fingerprint = :fp"), names)


def _rekey(table: str, index: str, columns: list[str]) -> None:
    """``fingerprint`` becomes ``key`` (a dedup key names an incident, not an alert)."""
    op.drop_index(index, table_name=table)
    with op.batch_alter_table(table) as batch:
        batch.alter_column("fingerprint", new_column_name="key", existing_type=TEXT, existing_nullable=False)
        batch.add_column(sa.Column("incident_id", INT))
    op.create_index("outbox_head" if table == "outbox" else "notification_log_key", table, columns)


def _incidents() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", INT, primary_key=True, autoincrement=True),
        sa.Column("key", TEXT, nullable=False, unique=True),
        sa.Column("domain", TEXT, nullable=False),
        sa.Column("host", TEXT),
        sa.Column("state", TEXT, nullable=False),
        sa.Column("severity", TEXT, nullable=False),
        sa.Column("priority", FLOAT, nullable=False, server_default="0"),
        sa.Column("title", TEXT, nullable=False),
        sa.Column("opened_at", FLOAT, nullable=False),
        sa.Column("updated_at", FLOAT, nullable=False),
        sa.Column("acknowledged_at", FLOAT),
        sa.Column("acknowledged_by", TEXT),
        sa.Column("resolved_at", FLOAT),
        sa.Column("resolved_by", TEXT),
        sa.Column("assignee", TEXT),
        sa.Column("escalation_policy", TEXT),
        sa.Column("escalation_level", INT, nullable=False, server_default="0"),
        sa.Column("next_escalation_at", FLOAT),
        sa.Column("merged_into", INT),
        sa.Column("detail", TEXT, nullable=False, server_default="{}"),
    )
    op.create_index("incidents_state", "incidents", ["state", "updated_at", "id"])
    op.create_index("incidents_domain", "incidents", ["domain", "state"])
    op.create_index("incidents_host", "incidents", ["host", "opened_at"])
    op.create_index("incidents_escalation", "incidents", ["next_escalation_at"])
    op.create_index("incidents_priority", "incidents", ["priority"])
    op.create_table(
        "incident_members",
        sa.Column("incident_id", INT, primary_key=True),
        sa.Column("fingerprint", TEXT, primary_key=True),
        sa.Column("joined_at", FLOAT, nullable=False),
        sa.Column("role", TEXT, nullable=False, server_default="member"),
    )
    op.create_index("incident_members_fp", "incident_members", ["fingerprint"])
    op.create_table(
        "incident_events",
        sa.Column("id", INT, primary_key=True, autoincrement=True),
        sa.Column("incident_id", INT, nullable=False),
        sa.Column("at", FLOAT, nullable=False),
        sa.Column("kind", TEXT, nullable=False),
        sa.Column("actor", TEXT, nullable=False),
        sa.Column("detail", TEXT, nullable=False, server_default="{}"),
    )
    op.create_index("incident_events_incident", "incident_events", ["incident_id", "id"])
    op.create_index("incident_events_at", "incident_events", ["at"])


def _notifications() -> None:
    op.create_table(
        "notification_groups",
        sa.Column("key", TEXT, primary_key=True),
        sa.Column("incident_id", INT, nullable=False),
        sa.Column("route", TEXT, nullable=False),
        sa.Column("receiver", TEXT, nullable=False),
        sa.Column("dedup_key", TEXT, nullable=False),
        sa.Column("group_labels", TEXT, nullable=False, server_default="{}"),
        sa.Column("next_flush_at", FLOAT),
        sa.Column("last_notified_at", FLOAT),
        sa.Column("notified_firing", TEXT, nullable=False, server_default="[]"),
        sa.Column("notified_resolved", TEXT, nullable=False, server_default="[]"),
        sa.Column("created_at", FLOAT, nullable=False),
    )
    op.create_index("notification_groups_due", "notification_groups", ["next_flush_at"])
    op.create_index("notification_groups_incident", "notification_groups", ["incident_id"])


def _records() -> None:
    op.create_table(
        "alert_history",
        sa.Column("id", INT, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", TEXT, nullable=False),
        sa.Column("at", FLOAT, nullable=False),
        sa.Column("status", TEXT, nullable=False),
        sa.Column("incident_id", INT),
        sa.Column("trail", TEXT, nullable=False),
    )
    op.create_index("alert_history_fp", "alert_history", ["fingerprint", "id"])
    op.create_index("alert_history_at", "alert_history", ["at"])
    op.create_table(
        "silences",
        sa.Column("id", TEXT, primary_key=True),
        sa.Column("matchers", TEXT, nullable=False),
        sa.Column("starts_at", FLOAT, nullable=False),
        sa.Column("ends_at", FLOAT, nullable=False),
        sa.Column("created_by", TEXT, nullable=False),
        sa.Column("comment", TEXT, nullable=False),
        sa.Column("created_at", FLOAT, nullable=False),
        sa.Column("updated_at", FLOAT, nullable=False),
        sa.Column("expired_by", TEXT),
    )
    op.create_index("silences_ends", "silences", ["ends_at"])
    op.create_table(
        "approvals",
        sa.Column("id", INT, primary_key=True, autoincrement=True),
        sa.Column("incident_id", INT),
        sa.Column("kind", TEXT, nullable=False),
        sa.Column("subject", TEXT, nullable=False),
        sa.Column("state", TEXT, nullable=False, server_default="pending"),
        sa.Column("requested_by", TEXT, nullable=False),
        sa.Column("requested_at", FLOAT, nullable=False),
        sa.Column("expires_at", FLOAT),
        sa.Column("decided_by", TEXT),
        sa.Column("decided_at", FLOAT),
        sa.Column("detail", TEXT, nullable=False, server_default="{}"),
    )
    op.create_index("approvals_state", "approvals", ["state", "requested_at"])
